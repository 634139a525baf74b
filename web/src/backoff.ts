/**
 * Retry delays: exponential backoff with "full jitter".
 *
 * Full jitter (a uniformly random delay between 0 and the exponential cap) spreads the
 * retries of many browsers that lost the network at the same moment, so they do not all
 * come back in one wave when it returns.
 */

export interface BackoffPolicy {
  /** The cap of the first retry, in milliseconds. */
  baseMs: number;
  /** No delay is ever longer than this, in milliseconds. */
  maxMs: number;
}

/**
 * The delay before retry number `attempt` (1 for the first retry).
 * `random` returns a number in [0, 1), like `Math.random`.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exponent = Math.max(0, attempt - 1);
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  return Math.floor(random() * cap);
}
