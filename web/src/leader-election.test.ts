import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  broadcastChannelElection,
  soloElection,
  webLocksElection,
  type ChannelLike,
  type LeaderElection,
} from './leader-election';
import { FakeLockManager } from './testing/fakes';

/** An in-memory BroadcastChannel: every channel of one hub hears the others, never itself. */
class FakeChannelHub {
  private channels = new Set<FakeChannel>();

  open(): ChannelLike {
    const channel = new FakeChannel(this);
    this.channels.add(channel);
    return channel;
  }

  deliver(from: FakeChannel, message: unknown) {
    for (const channel of this.channels) {
      if (channel !== from) channel.receive(message);
    }
  }

  remove(channel: FakeChannel) {
    this.channels.delete(channel);
  }
}

class FakeChannel implements ChannelLike {
  private listeners = new Set<(event: MessageEvent) => void>();
  constructor(private hub: FakeChannelHub) {}
  postMessage(message: unknown) {
    this.hub.deliver(this, structuredClone(message));
  }
  addEventListener(_type: 'message', listener: (event: MessageEvent) => void) {
    this.listeners.add(listener);
  }
  removeEventListener(_type: 'message', listener: (event: MessageEvent) => void) {
    this.listeners.delete(listener);
  }
  close() {
    this.hub.remove(this);
  }
  receive(message: unknown) {
    for (const listener of this.listeners) listener({ data: message } as MessageEvent);
  }
}

/** A candidate that records its leadership changes. */
function candidate(election: LeaderElection) {
  const changes: boolean[] = [];
  election.campaign((isLeader) => changes.push(isLeader));
  return changes;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('webLocksElection', () => {
  it('grants the lock to one tab at a time, in request order', async () => {
    const locks = new FakeLockManager();
    const first = webLocksElection(locks, 'lock');
    const second = webLocksElection(locks, 'lock');
    const firstChanges = candidate(first);
    const secondChanges = candidate(second);
    await vi.advanceTimersByTimeAsync(0);
    expect(firstChanges).toEqual([true]);
    expect(secondChanges).toEqual([]);

    first.resign();
    await vi.advanceTimersByTimeAsync(0);
    expect(secondChanges).toEqual([true]);
  });

  it('withdraws a pending candidacy without ever leading', async () => {
    const locks = new FakeLockManager();
    const first = webLocksElection(locks, 'lock');
    const second = webLocksElection(locks, 'lock');
    candidate(first);
    const secondChanges = candidate(second);
    await vi.advanceTimersByTimeAsync(0);
    second.resign();
    first.resign();
    await vi.advanceTimersByTimeAsync(0);

    expect(secondChanges).toEqual([]);
    expect(locks.isHeld('lock')).toBe(false);
  });
});

describe('broadcastChannelElection', () => {
  const electionOn = (hub: FakeChannelHub, id: number) =>
    broadcastChannelElection({ openChannel: () => hub.open(), random: () => id / 10, heartbeatMs: 1_000 });

  it('elects the first candidate after a silence, and keeps the second one waiting', async () => {
    const hub = new FakeChannelHub();
    const first = candidate(electionOn(hub, 1));
    await vi.advanceTimersByTimeAsync(1_000);
    const second = candidate(electionOn(hub, 2));
    await vi.advanceTimersByTimeAsync(10_000);

    expect(first).toEqual([true]);
    expect(second).toEqual([]);
  });

  it('hands over within a beat when the leader resigns', async () => {
    const hub = new FakeChannelHub();
    const firstElection = electionOn(hub, 1);
    const first = candidate(firstElection);
    await vi.advanceTimersByTimeAsync(1_000);
    const second = candidate(electionOn(hub, 2));
    await vi.advanceTimersByTimeAsync(5_000);

    firstElection.resign();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first).toEqual([true]);
    expect(second).toEqual([true]);
  });

  it('takes over from a leader that went silent (a closed or crashed tab)', async () => {
    const hub = new FakeChannelHub();
    const crashed = hub.open();
    const others = candidate(electionOn(hub, 2));
    // The crashed tab was leading: it beat twice, then nothing more.
    crashed.postMessage({ kind: 'heartbeat', from: 'a' });
    await vi.advanceTimersByTimeAsync(1_000);
    crashed.postMessage({ kind: 'heartbeat', from: 'a' });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(others).toEqual([]);

    await vi.advanceTimersByTimeAsync(2_000);
    expect(others).toEqual([true]);
  });

  it('resolves a simultaneous claim in favour of one tab', async () => {
    const hub = new FakeChannelHub();
    const first = candidate(electionOn(hub, 1));
    const second = candidate(electionOn(hub, 2));
    await vi.advanceTimersByTimeAsync(10_000);

    const leaders = [first, second].filter((changes) => changes.at(-1) === true);
    expect(leaders).toHaveLength(1);
  });
});

describe('soloElection', () => {
  it('always leads, and forgets a grant withdrawn before it arrived', async () => {
    const election = soloElection();
    const changes: boolean[] = [];
    election.campaign((isLeader) => changes.push(isLeader));
    election.resign();
    election.campaign((isLeader) => changes.push(isLeader));
    await vi.advanceTimersByTimeAsync(0);

    expect(changes).toEqual([true]);
  });
});
