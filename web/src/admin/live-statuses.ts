/**
 * How the users page reacts to one event of the WatchUserStatuses stream, as pure
 * functions.
 *
 * A status event is applied to the row already on screen at once (the badge changes
 * without waiting for the network); counts, and membership of a filtered page, need the
 * server, so events also ask for the page to be fetched again (debounced by the caller).
 */
import type { UserStatus, UserStatusEvent } from '../gen/presence/admin/v1/admin_pb';

export type StreamReaction =
  /** Show this status on its row, and refetch the page if `refetch`. */
  | { kind: 'apply'; status: UserStatus; refetch: boolean }
  /** Fetch the page again: what we know may be stale. */
  | { kind: 'refetch' }
  | { kind: 'ignore' };

export function reactionTo(event: UserStatusEvent): StreamReaction {
  // A snapshot is complete: anything that changed before the stream (re)connected is
  // only visible through a fresh page.
  if (event.snapshotComplete) return { kind: 'refetch' };
  // A resync announces a fresh snapshot; its completion triggers the refetch.
  if (event.resync) return { kind: 'ignore' };
  if (event.status) return { kind: 'apply', status: event.status, refetch: !event.snapshot };
  return { kind: 'ignore' };
}

/** The rows with `status` replacing the row of the same user; the same array if absent. */
export function withStatus(rows: UserStatus[], status: UserStatus): UserStatus[] {
  const index = rows.findIndex((row) => row.userId === status.userId);
  if (index === -1) return rows;
  const updated = [...rows];
  updated[index] = status;
  return updated;
}
