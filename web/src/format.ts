/**
 * French presentation of statuses and times, as pure functions so they can be tested
 * without a browser.
 */
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { StatusSource } from './gen/presence/admin/v1/admin_pb';

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
