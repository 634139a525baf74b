import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { webLocksElection } from './leader-election';
import { createPinger, type Pinger } from './pinger';
import { FakeLockManager, FakeVisibility } from './testing/fakes';

const LOCK = 'presence-pinger:user-1';

/** One simulated browser tab: its visibility, its pinger, and the times its pings were sent. */
interface Tab {
  visibility: FakeVisibility;
  pinger: Pinger;
  pingTimes: number[];
  onUnauthenticated: ReturnType<typeof vi.fn>;
}

interface TabOptions {
  locks?: FakeLockManager;
  visible?: boolean;
  /** What one ping does; by default the server answers with a 30 s interval. */
  ping?: () => Promise<{ pingIntervalSeconds?: number }>;
}

function openTab(options: TabOptions = {}): Tab {
  const visibility = new FakeVisibility(options.visible ?? true);
  const pingTimes: number[] = [];
  const onUnauthenticated = vi.fn();
  const answer = options.ping ?? (() => Promise.resolve({ pingIntervalSeconds: 30 }));
  const pinger = createPinger({
    ping: () => {
      pingTimes.push(Date.now());
      return answer();
    },
    visibility,
    election: webLocksElection(options.locks ?? new FakeLockManager(), LOCK),
    onUnauthenticated,
    random: () => 0.5,
  });
  return { visibility, pinger, pingTimes, onUnauthenticated };
}

/** Advances fake time to `ms` after the start of the test, running due timers and promises. */
async function advanceTo(ms: number) {
  await vi.advanceTimersByTimeAsync(ms - Date.now());
}

const unavailable = () => Promise.reject(new ConnectError('network down', Code.Unavailable));

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('a single tab', () => {
  it('pings at once, at the server interval, not while hidden, and at once when shown again', async () => {
    const tab = openTab();
    tab.pinger.start();
    await advanceTo(65_000);
    tab.visibility.set(false);
    await advanceTo(200_000);
    tab.visibility.set(true);
    await advanceTo(245_000);

    expect(tab.pingTimes).toEqual([0, 30_000, 60_000, 200_000, 230_000]);
  });

  it('uses 60 seconds when the server gives no interval', async () => {
    const tab = openTab({ ping: () => Promise.resolve({ pingIntervalSeconds: 0 }) });
    tab.pinger.start();
    await advanceTo(150_000);

    expect(tab.pingTimes).toEqual([0, 60_000, 120_000]);
  });

  it('does not ping while started hidden, and pings once shown', async () => {
    const tab = openTab({ visible: false });
    tab.pinger.start();
    await advanceTo(100_000);
    expect(tab.pingTimes).toEqual([]);

    tab.visibility.set(true);
    await advanceTo(100_001);
    expect(tab.pingTimes).toEqual([100_000]);
  });

  it('stops for good on sign-out', async () => {
    const tab = openTab();
    tab.pinger.start();
    await advanceTo(45_000);
    tab.pinger.stop();
    tab.visibility.set(false);
    tab.visibility.set(true);
    await advanceTo(300_000);

    expect(tab.pingTimes).toEqual([0, 30_000]);
  });

  it('stops and reports the end of the session on UNAUTHENTICATED', async () => {
    const locks = new FakeLockManager();
    let refused = false;
    const tab = openTab({
      locks,
      ping: () =>
        refused
          ? Promise.reject(new ConnectError('token revoked', Code.Unauthenticated))
          : Promise.resolve({ pingIntervalSeconds: 30 }),
    });
    tab.pinger.start();
    await advanceTo(10_000);
    refused = true;
    await advanceTo(31_000);
    tab.visibility.set(false);
    tab.visibility.set(true);
    await advanceTo(300_000);

    expect(tab.pingTimes).toEqual([0, 30_000]);
    expect(tab.onUnauthenticated).toHaveBeenCalledTimes(1);
    expect(locks.isHeld(LOCK)).toBe(false);
  });

  it('does not report an expiry for a refusal that lands after it was stopped', async () => {
    let refuse: (error: unknown) => void = () => undefined;
    const tab = openTab({ ping: () => new Promise((_, reject) => (refuse = reject)) });
    tab.pinger.start();
    await advanceTo(1_000);
    tab.pinger.stop();
    refuse(new ConnectError('token revoked', Code.Unauthenticated));
    await advanceTo(2_000);

    expect(tab.onUnauthenticated).not.toHaveBeenCalled();
  });
});

describe('network failures', () => {
  it('retry with capped exponential backoff and jitter, then resume the interval', async () => {
    let networkUp = false;
    const tab = openTab({ ping: () => (networkUp ? Promise.resolve({ pingIntervalSeconds: 30 }) : unavailable()) });
    tab.pinger.start();
    await advanceTo(100_000);

    // random() is 0.5, so each delay is half the cap: 1 s, 2 s, 4 s, ... capped at the 60 s
    // default interval (no successful ping has told us otherwise yet).
    expect(tab.pingTimes).toEqual([0, 500, 1_500, 3_500, 7_500, 15_500, 31_500, 61_500, 91_500]);

    networkUp = true;
    await advanceTo(200_000);
    expect(tab.pingTimes.slice(9)).toEqual([121_500, 151_500, 181_500]);
    expect(tab.onUnauthenticated).not.toHaveBeenCalled();
  });

  it('never has more than one ping in flight, whatever the page does meanwhile', async () => {
    let answer: (value: { pingIntervalSeconds: number }) => void = () => undefined;
    const tab = openTab({ ping: () => new Promise((resolve) => (answer = resolve)) });
    tab.pinger.start();
    await advanceTo(1_000);
    for (let flip = 0; flip < 5; flip++) {
      tab.visibility.set(false);
      tab.visibility.set(true);
      await advanceTo(Date.now() + 1_000);
    }
    await advanceTo(120_000);
    expect(tab.pingTimes).toEqual([0]);

    // The network answers at last: one schedule resumes, not one per missed tick.
    answer({ pingIntervalSeconds: 30 });
    await advanceTo(125_000);
    expect(tab.pingTimes).toEqual([0]);
    await advanceTo(150_000);
    expect(tab.pingTimes).toEqual([0, 150_000]);
  });
});

describe('two tabs of one browser', () => {
  it('only the leader pings; the other takes over when the leader stops', async () => {
    const locks = new FakeLockManager();
    const first = openTab({ locks });
    const second = openTab({ locks });
    first.pinger.start();
    second.pinger.start();
    await advanceTo(65_000);
    expect(first.pingTimes).toEqual([0, 30_000, 60_000]);
    expect(second.pingTimes).toEqual([]);

    first.pinger.stop();
    await advanceTo(100_000);
    expect(first.pingTimes).toEqual([0, 30_000, 60_000]);
    expect(second.pingTimes).toEqual([65_000, 95_000]);
  });

  it('a hidden leader hands over to a visible tab, and takes back over when that one is hidden', async () => {
    const locks = new FakeLockManager();
    const first = openTab({ locks });
    const second = openTab({ locks });
    first.pinger.start();
    second.pinger.start();
    await advanceTo(10_000);

    first.visibility.set(false);
    await advanceTo(20_000);
    first.visibility.set(true);
    await advanceTo(55_000);
    second.visibility.set(false);
    await advanceTo(70_000);

    expect(first.pingTimes).toEqual([0, 55_000]);
    expect(second.pingTimes).toEqual([10_000, 40_000]);
  });

  it('nobody pings while every tab is hidden', async () => {
    const locks = new FakeLockManager();
    const first = openTab({ locks, visible: false });
    const second = openTab({ locks, visible: false });
    first.pinger.start();
    second.pinger.start();
    await advanceTo(300_000);

    expect(first.pingTimes).toEqual([]);
    expect(second.pingTimes).toEqual([]);
  });
});
