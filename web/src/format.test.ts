import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { formatDateTime, isoDateTime, onlineLabel, sourceLabel, UNKNOWN } from './format';
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
});
