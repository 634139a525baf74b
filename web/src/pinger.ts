/**
 * The pinger: tells the server "this user is here" while the user can see the app.
 *
 * Rules (docs/design.md, "What it is for"):
 * - ping at once when started, then every `ping_interval_seconds` the server returns;
 * - only while the page is visible; hiding stops the loop, showing pings at once and
 *   restarts the interval;
 * - only one tab of the browser pings: the others wait as candidates of a leader election,
 *   and a hidden tab resigns so a visible one can take over;
 * - UNAUTHENTICATED ends the pinger for good and reports it (the session is over);
 * - any other failure is retried with jittered exponential backoff capped at the interval,
 *   silently; at most one ping is ever in flight and none is ever queued, so the return of
 *   the network produces one ping, not a burst.
 *
 * Every dependency (the call itself, timers, visibility, election, randomness) is handed
 * in, which keeps this module free of UI code and lets tests drive it with fake time.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { backoffDelay } from './backoff';
import type { LeaderElection } from './leader-election';
import { platformTimers, type TimerHandle, type Timers } from './timers';
import type { VisibilitySource } from './visibility';

/** Used until the server says otherwise, and whenever it answers 0. */
export const DEFAULT_PING_INTERVAL_SECONDS = 60;
/** The first retry after a failure waits up to this long; each further one doubles it. */
export const FIRST_RETRY_CAP_MS = 1000;

export interface PingerDeps {
  /** Sends one Ping; resolves with the server's answer. */
  ping: () => Promise<{ pingIntervalSeconds?: number }>;
  visibility: VisibilitySource;
  election: LeaderElection;
  /** Called once when the server refuses the token; the pinger has stopped by then. */
  onUnauthenticated: () => void;
  timers?: Timers;
  /** A number in [0, 1), for retry jitter. */
  random?: () => number;
  /** Tells a refused token apart from a failure worth retrying. */
  isUnauthenticated?: (error: unknown) => boolean;
}

export interface Pinger {
  start(): void;
  stop(): void;
  /** Pings now rather than at the next interval (input after idle), if this tab pings. */
  pingSoon(): void;
}

export function createPinger(deps: PingerDeps): Pinger {
  const timers = deps.timers ?? platformTimers;
  const random = deps.random ?? Math.random;
  const isUnauthenticated = deps.isUnauthenticated ?? isUnauthenticatedError;

  let started = false;
  let leading = false;
  let inFlight = false;
  let intervalMs = DEFAULT_PING_INTERVAL_SECONDS * 1000;
  let consecutiveFailures = 0;
  let nextPing: TimerHandle | undefined;
  let stopWatchingVisibility: (() => void) | undefined;

  const shouldPing = () => started && leading && deps.visibility.isVisible();

  function cancelNextPing() {
    if (nextPing !== undefined) timers.clearTimeout(nextPing);
    nextPing = undefined;
  }

  function scheduleNextPing(delayMs: number) {
    cancelNextPing();
    nextPing = timers.setTimeout(() => {
      nextPing = undefined;
      void pingNow();
    }, delayMs);
  }

  async function pingNow() {
    cancelNextPing();
    // The answer of the ping in flight schedules the next one; never stack a second.
    if (inFlight || !shouldPing()) return;
    inFlight = true;
    let delayMs: number;
    try {
      const answer = await deps.ping();
      consecutiveFailures = 0;
      const seconds = answer.pingIntervalSeconds ?? 0;
      intervalMs = (seconds > 0 ? seconds : DEFAULT_PING_INTERVAL_SECONDS) * 1000;
      delayMs = intervalMs;
    } catch (error) {
      if (isUnauthenticated(error)) {
        inFlight = false;
        // A refusal that lands after stop() (e.g. during sign-out) is not an expiry to report.
        if (started) {
          stop();
          deps.onUnauthenticated();
        }
        return;
      }
      consecutiveFailures += 1;
      delayMs = backoffDelay(consecutiveFailures, { baseMs: FIRST_RETRY_CAP_MS, maxMs: intervalMs }, random);
    }
    inFlight = false;
    // Hidden, demoted or stopped while the ping was in flight: whoever resumes pings afresh.
    if (shouldPing()) scheduleNextPing(delayMs);
  }

  function onLeadershipChange(isLeader: boolean) {
    leading = isLeader;
    if (shouldPing()) void pingNow();
    else cancelNextPing();
  }

  function onVisibilityChange(visible: boolean) {
    if (!started) return;
    if (visible) {
      deps.election.campaign(onLeadershipChange);
    } else {
      // Hand leadership over so that a visible tab, if any, pings instead.
      cancelNextPing();
      leading = false;
      deps.election.resign();
    }
  }

  function start() {
    if (started) return;
    started = true;
    stopWatchingVisibility = deps.visibility.subscribe(onVisibilityChange);
    if (deps.visibility.isVisible()) deps.election.campaign(onLeadershipChange);
  }

  function stop() {
    if (!started) return;
    started = false;
    leading = false;
    cancelNextPing();
    stopWatchingVisibility?.();
    stopWatchingVisibility = undefined;
    deps.election.resign();
  }

  function pingSoon() {
    if (shouldPing()) void pingNow();
  }

  return { start, stop, pingSoon };
}

function isUnauthenticatedError(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unauthenticated;
}
