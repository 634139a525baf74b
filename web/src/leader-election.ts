/**
 * Leader election between the tabs of one browser, so only one of them pings.
 *
 * The preferred mechanism is the Web Locks API: the leader is whoever holds a named lock,
 * the browser hands the lock to the next waiting tab the moment the holder releases it or
 * its tab closes or crashes, and there is nothing to time out. Web Locks exist only in
 * secure contexts (HTTPS or loopback), so a deployment over plain HTTP falls back to a
 * heartbeat protocol over BroadcastChannel; without either, every tab leads (duplicate
 * pings are harmless, missing ones are not).
 */
import { platformTimers, type TimerHandle, type Timers } from './timers';

export interface LeaderElection {
  /**
   * Starts competing for leadership. `onChange(true)` is called when this tab becomes the
   * leader, and `onChange(false)` if it later loses leadership without having resigned.
   * Calling `campaign` while already competing does nothing.
   */
  campaign(onChange: (isLeader: boolean) => void): void;
  /** Stops competing and hands leadership over if this tab holds it. */
  resign(): void;
}

/** The part of the Web Locks `LockManager` this module needs. */
export interface LockManagerLike {
  request(name: string, options: { signal: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
}

/** Leadership is holding the lock `lockName`, kept for as long as the tab leads. */
export function webLocksElection(locks: LockManagerLike, lockName: string): LeaderElection {
  let current: { abort: AbortController; release?: () => void } | null = null;

  return {
    campaign(onChange) {
      if (current) return;
      const entry: { abort: AbortController; release?: () => void } = { abort: new AbortController() };
      current = entry;
      locks
        .request(lockName, { signal: entry.abort.signal }, () => {
          // The lock is held until this promise settles, i.e. until `resign` resolves it.
          return new Promise<void>((resolve) => {
            if (current !== entry) {
              // Resigned after the lock was granted but before this callback ran.
              resolve();
              return;
            }
            entry.release = resolve;
            onChange(true);
          });
        })
        .catch((error: unknown) => {
          if (isAbortError(error) || current !== entry) return;
          // The lock manager refused (it should not): fail open rather than never ping.
          console.warn('Web Locks request failed; this tab pings without coordination.', error);
          onChange(true);
        });
    },
    resign() {
      if (!current) return;
      current.abort.abort();
      current.release?.();
      current = null;
    },
  };
}

/** The part of `BroadcastChannel` this module needs. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  removeEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  close(): void;
}

export interface BroadcastElectionOptions {
  openChannel: () => ChannelLike;
  timers?: Timers;
  now?: () => number;
  random?: () => number;
  /** How often the leader announces itself; a leader silent for 2.5 beats is presumed gone. */
  heartbeatMs?: number;
}

type ElectionMessage = { kind: 'heartbeat' | 'resign'; from: string };

/**
 * Leadership by heartbeat over a BroadcastChannel. The leader announces itself every beat;
 * a candidate that hears nobody for 2.5 beats takes over, and a leader that resigns says so
 * in order for the others to take over at their next beat. When two tabs claim at once,
 * the one with the smaller id keeps leadership and the other steps down.
 */
export function broadcastChannelElection(options: BroadcastElectionOptions): LeaderElection {
  const timers = options.timers ?? platformTimers;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const silenceLimitMs = heartbeatMs * 2.5;

  interface Candidacy {
    id: string;
    channel: ChannelLike;
    onMessage: (event: MessageEvent) => void;
    timer?: TimerHandle;
    leading: boolean;
    lastHeardFromLeader: number;
  }
  let session: Candidacy | null = null;

  return {
    campaign(onChange) {
      if (session) return;
      const id = random().toString(36).slice(2) + now().toString(36);
      const self: Candidacy = {
        id,
        channel: options.openChannel(),
        leading: false,
        // Give an existing leader a full silence window to make itself heard.
        lastHeardFromLeader: now(),
        onMessage: (event) => {
          const message = event.data as Partial<ElectionMessage> | null;
          if (!message || typeof message.from !== 'string' || message.from === id) return;
          if (message.kind === 'resign') {
            self.lastHeardFromLeader = Number.NEGATIVE_INFINITY;
          } else if (message.kind === 'heartbeat') {
            self.lastHeardFromLeader = now();
            if (self.leading && message.from < id) {
              self.leading = false;
              onChange(false);
            }
          }
        },
      };
      session = self;
      self.channel.addEventListener('message', self.onMessage);

      const beat = () => {
        if (session !== self) return;
        if (!self.leading && now() - self.lastHeardFromLeader > silenceLimitMs) {
          self.leading = true;
          onChange(true);
        }
        if (self.leading) self.channel.postMessage({ kind: 'heartbeat', from: id } satisfies ElectionMessage);
        self.timer = timers.setTimeout(beat, heartbeatMs);
      };
      self.timer = timers.setTimeout(beat, heartbeatMs);
    },
    resign() {
      if (!session) return;
      const { channel, id, leading, onMessage, timer } = session;
      session = null;
      if (timer !== undefined) timers.clearTimeout(timer);
      if (leading) channel.postMessage({ kind: 'resign', from: id } satisfies ElectionMessage);
      channel.removeEventListener('message', onMessage);
      channel.close();
    },
  };
}

/** Every tab leads: the fallback when the browser has no way to coordinate tabs. */
export function soloElection(): LeaderElection {
  // Bumped on every change so a grant queued by an earlier campaign is ignored.
  let generation = 0;
  let competing = false;
  return {
    campaign(onChange) {
      if (competing) return;
      competing = true;
      const mine = ++generation;
      queueMicrotask(() => {
        if (competing && generation === mine) onChange(true);
      });
    },
    resign() {
      competing = false;
      generation++;
    },
  };
}

/** The best election this browser supports, for the pinger of one user. */
export function browserLeaderElection(name: string): LeaderElection {
  if (typeof navigator !== 'undefined' && 'locks' in navigator) {
    return webLocksElection(navigator.locks, name);
  }
  if (typeof BroadcastChannel !== 'undefined') {
    return broadcastChannelElection({ openChannel: () => new BroadcastChannel(name) });
  }
  return soloElection();
}

function isAbortError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'name' in error && error.name === 'AbortError';
}
