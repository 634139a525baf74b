import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import {
  browsersLabel,
  daysLabel,
  durationLabel,
  formatDateTime,
  isoDateTime,
  loginEventLabel,
  onlineLabel,
  ruleLabel,
  sourceLabel,
  statusSentence,
  timeAgo,
  UNKNOWN,
} from './format';
import { StatusSource } from './gen/presence/admin/v1/admin_pb';

const moment = timestampFromMs(Date.UTC(2025, 10, 25, 14, 3, 7));

describe('formatDateTime', () => {
  it('writes the date and time the French way', () => {
    expect(formatDateTime(moment, 'UTC')).toBe('25/11/2025 14:03:07');
    expect(formatDateTime(moment, 'Europe/Paris')).toBe('25/11/2025 15:03:07');
  });

  it('shows a dash when the time is unknown', () => {
    expect(formatDateTime(undefined)).toBe(UNKNOWN);
  });
});

describe('isoDateTime', () => {
  it('gives the machine-readable form', () => {
    expect(isoDateTime(moment)).toBe('2025-11-25T14:03:07.000Z');
    expect(isoDateTime(undefined)).toBeUndefined();
  });
});

describe('labels', () => {
  it('names statuses and sources in French', () => {
    expect(onlineLabel(true)).toBe('En ligne');
    expect(onlineLabel(false)).toBe('Hors ligne');
    expect(sourceLabel(StatusSource.ACTIVITY)).toBe('activité');
    expect(sourceLabel(StatusSource.LOGIN_HISTORY)).toBe('historique de connexion');
    expect(sourceLabel(StatusSource.NONE)).toBe(UNKNOWN);
    expect(sourceLabel(StatusSource.UNSPECIFIED)).toBe(UNKNOWN);
  });

  it('counts browsers in French', () => {
    expect(browsersLabel(1)).toBe('1 navigateur');
    expect(browsersLabel(2)).toBe('2 navigateurs');
  });
});

/** Intl writes a no-break space between a number and its unit; compare the words. */
const plain = (text: string) => text.replace(/[\u00a0\u202f]/g, ' ');

describe('timeAgo', () => {
  const now = Date.UTC(2026, 11, 3, 15, 0, 0);
  it('says how long ago, in the unit a reader expects', () => {
    expect(plain(timeAgo(now - 40_000, now))).toBe('il y a 40 s');
    expect(plain(timeAgo(now - 3 * 60_000 - 59_000, now))).toBe('il y a 3 min');
    expect(plain(timeAgo(now - 2 * 3_600_000, now))).toBe('il y a 2 h');
    expect(plain(timeAgo(now - 5 * 86_400_000, now))).toBe('il y a 5 j');
  });

  it('reads a moment just now, or ahead of this clock, as « à l’instant »', () => {
    expect(plain(timeAgo(now - 2_000, now))).toBe("à l'instant");
    expect(plain(timeAgo(now + 30_000, now))).toBe("à l'instant");
  });
});

describe('statusSentence', () => {
  const now = Date.UTC(2026, 11, 3, 15, 30, 0);
  const base = { thresholdMinutes: 15, disabled: false };
  const at = (hours: number, minutes: number) => Date.UTC(2026, 11, 3, hours, minutes, 0);

  it('online by activity: how long ago the last ping was', () => {
    const evidence = { ...base, online: true, source: StatusSource.ACTIVITY, lastActivityMs: now - 40_000, lastLoginMs: at(14, 2) };
    expect(plain(statusSentence(evidence, now, 'UTC'))).toBe('En ligne — dernière activité il y a 40 s');
  });

  it('online by login alone: the login it is judged on', () => {
    const evidence = { ...base, online: true, source: StatusSource.LOGIN_HISTORY, lastLoginMs: at(14, 2) };
    expect(plain(statusSentence(evidence, now, 'UTC'))).toBe("En ligne d'après la connexion de 14:02 (aucune activité depuis)");
    expect(plain(statusSentence(evidence, now, 'Europe/Paris'))).toBe(
      "En ligne d'après la connexion de 15:02 (aucune activité depuis)",
    );
  });

  it('offline by logout: when they signed out, with the date when it was another day', () => {
    const evidence = { ...base, online: false, source: StatusSource.NONE, lastActivityMs: at(15, 9), lastLogoutMs: at(15, 10) };
    expect(plain(statusSentence(evidence, now, 'UTC'))).toBe('Hors ligne — déconnecté à 15:10');
    const yesterday = { ...evidence, lastActivityMs: undefined, lastLogoutMs: at(15, 10) - 86_400_000 };
    expect(plain(statusSentence(yesterday, now, 'UTC'))).toBe('Hors ligne — déconnecté le 02/12/2026 à 15:10');
  });

  it('offline past the threshold: the last activity and the threshold it was judged with', () => {
    const evidence = {
      ...base,
      online: false,
      source: StatusSource.NONE,
      lastActivityMs: now - 2 * 3_600_000,
      lastLogoutMs: now - 5 * 3_600_000,
    };
    expect(plain(statusSentence(evidence, now, 'UTC'))).toBe('Hors ligne — dernière activité il y a 2 h (seuil : 15 min)');
    const loginOnly = { ...base, online: false, source: StatusSource.NONE, lastLoginMs: now - 20 * 60_000 };
    expect(plain(statusSentence(loginOnly, now, 'UTC'))).toBe('Hors ligne — dernière connexion il y a 20 min (seuil : 15 min)');
  });

  it('never seen, or disabled', () => {
    expect(plain(statusSentence({ ...base, online: false, source: StatusSource.NONE }, now))).toBe(
      'Hors ligne — aucune activité ni connexion connue',
    );
    expect(plain(statusSentence({ ...base, disabled: true, online: false, source: StatusSource.NONE, lastActivityMs: now }, now))).toBe(
      'Hors ligne — compte désactivé',
    );
  });
});

describe('ruleLabel', () => {
  const base = { thresholdMinutes: 15, disabled: false, online: false, source: StatusSource.NONE };
  it('names the rule that decided', () => {
    expect(ruleLabel({ ...base, online: true, source: StatusSource.ACTIVITY })).toBe('activité récente (un ping dans le seuil)');
    expect(ruleLabel({ ...base, online: true, source: StatusSource.LOGIN_HISTORY })).toBe(
      'connexion récente, sans déconnexion depuis',
    );
    expect(ruleLabel({ ...base, lastActivityMs: 10, lastLogoutMs: 20 })).toBe('déconnexion');
    expect(ruleLabel({ ...base, lastActivityMs: 30, lastLogoutMs: 20 })).toBe('seuil dépassé depuis la dernière activité');
    expect(ruleLabel(base)).toBe('aucune activité ni connexion connue');
    expect(ruleLabel({ ...base, disabled: true })).toBe('compte désactivé');
  });
});

describe('durationLabel', () => {
  it('says a retention in minutes, hours or days', () => {
    expect(durationLabel(30 * 60)).toBe('30 min');
    expect(durationLabel(2 * 3_600)).toBe('2 h');
    expect(durationLabel(90 * 60)).toBe('1 h 30 min');
    expect(durationLabel(2 * 86_400)).toBe('2 jours');
    expect(daysLabel(1)).toBe('1 jour');
    expect(daysLabel(365)).toBe('365 jours');
  });
});

describe('loginEventLabel', () => {
  it('names the event and, in French, why a sign-in failed', () => {
    expect(loginEventLabel(1, '')).toBe('Connexion');
    expect(loginEventLabel(2, 'wrong_password')).toBe('Échec de connexion (mot de passe incorrect)');
    expect(loginEventLabel(2, 'something_new')).toBe('Échec de connexion (something_new)');
    expect(loginEventLabel(3, '')).toBe('Déconnexion');
    expect(loginEventLabel(42, '')).toBe('Événement inconnu');
  });
});
