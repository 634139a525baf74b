import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { watchWithReconnect, type StreamState } from './status-stream';

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

/** A server whose n-th stream (0-based) is scripted by `script(n)`. */
function scriptedServer(script: (attempt: number) => { events: string[]; then: 'end' | 'fail' | Code | 'hang' }) {
  const openedAt: number[] = [];
  const open = (signal: AbortSignal) => {
    const { events, then } = script(openedAt.length);
    openedAt.push(Date.now());
    return (async function* () {
      await Promise.resolve();
      yield* events;
      if (then === 'fail') throw new ConnectError('gone', Code.Unavailable);
      if (typeof then === 'number') throw new ConnectError('refused', then);
      if (then === 'hang') {
        await new Promise((resolve) => {
          signal.addEventListener('abort', resolve);
        });
        throw new ConnectError('aborted', Code.Canceled);
      }
    })();
  };
  return { open, openedAt };
}

function watch(open: (signal: AbortSignal) => AsyncIterable<string>) {
  const abort = new AbortController();
  const events: string[] = [];
  const states: StreamState[] = [];
  const done = watchWithReconnect({
    open,
    onEvent: (event) => events.push(event),
    onState: (state) => states.push(state),
    signal: abort.signal,
    random: () => 0.5,
  });
  return { abort, events, states, done };
}

describe('watchWithReconnect', () => {
  it('reconnects with growing jittered delays while the stream keeps failing', async () => {
    const server = scriptedServer(() => ({ events: [], then: 'fail' }));
    const watcher = watch(server.open);
    await vi.advanceTimersByTimeAsync(10_000);
    watcher.abort.abort();
    await watcher.done;

    expect(server.openedAt).toEqual([0, 500, 1_500, 3_500, 7_500]);
    expect(watcher.states.at(-1)).toBe('reconnecting');
  });

  it('starts backing off afresh after a stream that delivered events', async () => {
    const server = scriptedServer((attempt) => ({ events: attempt === 2 ? ['x'] : [], then: 'fail' }));
    const watcher = watch(server.open);
    await vi.advanceTimersByTimeAsync(3_000);
    watcher.abort.abort();
    await watcher.done;

    expect(server.openedAt).toEqual([0, 500, 1_500, 2_000, 3_000]);
    expect(watcher.events).toEqual(['x']);
  });

  it('gives up when the server refuses the caller', async () => {
    const server = scriptedServer(() => ({ events: ['x'], then: Code.PermissionDenied }));
    const watcher = watch(server.open);
    await watcher.done;

    expect(server.openedAt).toEqual([0]);
    expect(watcher.states).toEqual(['connecting', 'live', 'refused']);
  });

  it('stops at once when aborted', async () => {
    const server = scriptedServer(() => ({ events: ['x'], then: 'hang' }));
    const watcher = watch(server.open);
    await vi.advanceTimersByTimeAsync(1_000);
    watcher.abort.abort();
    await watcher.done;
    await vi.advanceTimersByTimeAsync(60_000);

    expect(server.openedAt).toEqual([0]);
  });
});
