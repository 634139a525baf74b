/**
 * French presentation of statuses and times, as pure functions so they can be tested
 * without a browser.
 */
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { PresenceState, StatusSource } from './gen/presence/admin/v1/admin_pb';

/** Shown where a value is unknown. */
export const UNKNOWN = '—';

/**
 * A timestamp as a French short date and time, e.g. « 25/11/2025 14:03:07 ».
 * `timeZone` defaults to the browser's own; tests pin it.
 */
export function formatDateTime(timestamp: Timestamp | undefined, timeZone?: string): string {
  if (!timestamp) return UNKNOWN;
  return new Intl.DateTimeFormat('fr-FR', { dateStyle: 'short', timeStyle: 'medium', timeZone }).format(
    timestampDate(timestamp),
  );
}

/** A timestamp as ISO 8601, for the machine-readable side of a <time> element. */
export function isoDateTime(timestamp: Timestamp | undefined): string | undefined {
  return timestamp ? timestampDate(timestamp).toISOString() : undefined;
}

export function onlineLabel(online: boolean): string {
  return online ? 'En ligne' : 'Hors ligne';
}

/** The badge's word: « Absent » is online with every browser idle (idle detection on). */
export function stateLabel(online: boolean, state: PresenceState): string {
  if (online && state === PresenceState.AWAY) return 'Absent';
  return onlineLabel(online);
}

/** « 2 navigateurs »: how many of the user's browsers keep them online. */
export function browsersLabel(count: number): string {
  return count === 1 ? '1 navigateur' : `${count} navigateurs`;
}

export function sourceLabel(source: StatusSource): string {
  switch (source) {
    case StatusSource.ACTIVITY:
      return 'activité';
    case StatusSource.LOGIN_HISTORY:
      return 'historique de connexion';
    default:
      return UNKNOWN;
  }
}

const relative = new Intl.RelativeTimeFormat('fr-FR', { style: 'short', numeric: 'always' });

/**
 * How long ago `atMs` was, the French way: « il y a 40 s », « il y a 3 min », « il y a 2 h »,
 * « il y a 5 j » (a moment in the future, from a clock ahead of ours, reads « à l'instant »).
 */
export function timeAgo(atMs: number, nowMs: number): string {
  const seconds = Math.floor((nowMs - atMs) / 1000);
  if (seconds < 5) return "à l'instant";
  if (seconds < 60) return relative.format(-seconds, 'second');
  if (seconds < 3_600) return relative.format(-Math.floor(seconds / 60), 'minute');
  if (seconds < 86_400) return relative.format(-Math.floor(seconds / 3_600), 'hour');
  return relative.format(-Math.floor(seconds / 86_400), 'day');
}

/** The time of `atMs` (« 14:02 ») and its date (« 02/12/2026 ») unless it is the day of `nowMs`. */
export function clockTime(atMs: number, nowMs: number, timeZone?: string): { day?: string; time: string } {
  const day = new Intl.DateTimeFormat('fr-FR', { dateStyle: 'short', timeZone });
  const time = new Intl.DateTimeFormat('fr-FR', { timeStyle: 'short', timeZone }).format(atMs);
  return day.format(atMs) === day.format(nowMs) ? { time } : { day: day.format(atMs), time };
}

/** What the evidence of a status says about it, as an administrator reads it. */
export interface StatusEvidence {
  online: boolean;
  source: StatusSource;
  lastActivityMs?: number;
  lastLoginMs?: number;
  lastLogoutMs?: number;
  thresholdMinutes: number;
  disabled: boolean;
}

/**
 * Why a user has their status, in one French sentence: « En ligne — dernière activité
 * il y a 40 s », « En ligne d'après la connexion de 14:02 (aucune activité depuis) »,
 * « Hors ligne — déconnecté à 15:10 », « Hors ligne — dernière activité il y a 2 h
 * (seuil : 15 min) ».
 */
export function statusSentence(evidence: StatusEvidence, nowMs: number, timeZone?: string): string {
  const { lastActivityMs, lastLoginMs, lastLogoutMs, thresholdMinutes } = evidence;
  if (evidence.disabled) return 'Hors ligne — compte désactivé';
  if (evidence.online) {
    if (evidence.source === StatusSource.LOGIN_HISTORY && lastLoginMs !== undefined) {
      const { day, time } = clockTime(lastLoginMs, nowMs, timeZone);
      const when = day ? `du ${day} à ${time}` : `de ${time}`;
      return `En ligne d'après la connexion ${when} (aucune activité depuis)`;
    }
    return lastActivityMs === undefined ? 'En ligne' : `En ligne — dernière activité ${timeAgo(lastActivityMs, nowMs)}`;
  }
  const lastSeenMs = Math.max(lastActivityMs ?? -Infinity, lastLoginMs ?? -Infinity);
  if (lastLogoutMs !== undefined && lastLogoutMs >= lastSeenMs) {
    const { day, time } = clockTime(lastLogoutMs, nowMs, timeZone);
    return `Hors ligne — déconnecté ${day ? `le ${day} ` : ''}à ${time}`;
  }
  const threshold = `(seuil : ${thresholdMinutes} min)`;
  if (lastActivityMs !== undefined && lastActivityMs >= lastSeenMs) {
    return `Hors ligne — dernière activité ${timeAgo(lastActivityMs, nowMs)} ${threshold}`;
  }
  if (lastLoginMs !== undefined) return `Hors ligne — dernière connexion ${timeAgo(lastLoginMs, nowMs)} ${threshold}`;
  return 'Hors ligne — aucune activité ni connexion connue';
}

/** The rule that decided, as the user's page names it. */
export function ruleLabel(evidence: StatusEvidence): string {
  if (evidence.disabled) return 'compte désactivé';
  if (evidence.online) {
    return evidence.source === StatusSource.LOGIN_HISTORY
      ? 'connexion récente, sans déconnexion depuis'
      : 'activité récente (un ping dans le seuil)';
  }
  const lastSeenMs = Math.max(evidence.lastActivityMs ?? -Infinity, evidence.lastLoginMs ?? -Infinity);
  if (evidence.lastLogoutMs !== undefined && evidence.lastLogoutMs >= lastSeenMs) return 'déconnexion';
  return lastSeenMs === -Infinity ? 'aucune activité ni connexion connue' : 'seuil dépassé depuis la dernière activité';
}

/** What a login_history event was, the same in both contracts (their kinds share numbers). */
const EVENT_LABELS: Record<number, string> = {
  0: 'Événement inconnu',
  1: 'Connexion',
  2: 'Échec de connexion',
  3: 'Déconnexion',
};

const FAILURE_REASONS: Record<string, string> = {
  wrong_password: 'mot de passe incorrect',
  unknown_user: 'utilisateur inconnu',
  account_disabled: 'compte désactivé',
  service_account: 'compte de service',
  throttled: 'trop de tentatives',
};

/** « Connexion », « Échec de connexion (mot de passe incorrect) », « Déconnexion ». */
export function loginEventLabel(kind: number, failureReason: string): string {
  const label = EVENT_LABELS[kind] ?? EVENT_LABELS[0];
  return failureReason ? `${label} (${FAILURE_REASONS[failureReason] ?? failureReason})` : label;
}

/** A retention in plain French: « 30 min », « 2 h », « 1 h 30 min », « 2 jours ». */
export function durationLabel(seconds: number): string {
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${Math.max(minutes, 1)} min`;
  if (minutes % 1_440 === 0) return daysLabel(minutes / 1_440);
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `${hours} h` : `${hours} h ${rest} min`;
}

/** « 1 jour », « 365 jours ». */
export function daysLabel(days: number): string {
  return days === 1 ? '1 jour' : `${days} jours`;
}
