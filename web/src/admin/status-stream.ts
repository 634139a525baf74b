/**
 * Keeps a WatchUserStatuses stream open for as long as the page wants it: reconnects
 * with jittered backoff whenever the stream ends or fails, and gives up only when the
 * server refuses the caller (the session or role is the problem, not the network).
 */
import { Code } from '@connectrpc/connect';
import { backoffDelay } from '../backoff';
import { errorCode } from '../errors';
import { platformTimers, type Timers } from '../timers';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'refused';

export interface WatchOptions<Event> {
  /** Opens the stream; it must stop when `signal` aborts. */
  open: (signal: AbortSignal) => AsyncIterable<Event>;
  onEvent: (event: Event) => void;
  onState: (state: StreamState) => void;
  signal: AbortSignal;
  timers?: Timers;
  random?: () => number;
}

export const RECONNECT_POLICY = { baseMs: 1_000, maxMs: 30_000 };

export async function watchWithReconnect<Event>(options: WatchOptions<Event>): Promise<void> {
  const timers = options.timers ?? platformTimers;
  const random = options.random ?? Math.random;
  const { signal } = options;
  // A function, not `signal.aborted` inline: the flag changes while we await.
  const cancelled = () => signal.aborted;
  let failedAttempts = 0;

  while (!cancelled()) {
    options.onState(failedAttempts === 0 ? 'connecting' : 'reconnecting');
    try {
      for await (const event of options.open(signal)) {
        // Any event proves the stream works: the next failure starts backing off afresh.
        failedAttempts = 0;
        options.onState('live');
        options.onEvent(event);
      }
    } catch (error) {
      if (cancelled()) return;
      const code = errorCode(error);
      if (code === Code.Unauthenticated || code === Code.PermissionDenied) {
        options.onState('refused');
        return;
      }
    }
    if (cancelled()) return;
    failedAttempts += 1;
    options.onState('reconnecting');
    await sleep(backoffDelay(failedAttempts, RECONNECT_POLICY, random), signal, timers);
  }
}

function sleep(ms: number, signal: AbortSignal, timers: Timers): Promise<void> {
  return new Promise((resolve) => {
    const handle = timers.setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      timers.clearTimeout(handle);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
