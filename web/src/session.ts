/**
 * The signed-in session of this tab: the token and who it belongs to.
 *
 * Kept in sessionStorage, so it lives as long as the tab and is never shared with other
 * tabs or left behind when the browser closes. The store is a tiny observable (compatible
 * with React's useSyncExternalStore) so the transport, the pinger and the UI all read the
 * same session, and it ends the session by itself when the token's expiry passes.
 */
import { platformTimers, type TimerHandle, type Timers } from './timers';

export interface Session {
  accessToken: string;
  userId: string;
  /** `user` or `admin`. */
  role: string;
  displayName: string;
  /** When the server stops accepting the token, in milliseconds since the epoch. */
  expiresAtMs: number;
}

/** Why the last session ended: decides what the sign-in page says. */
export type SessionEnd = 'signed-out' | 'expired';

export interface SessionState {
  session: Session | null;
  ended: SessionEnd | null;
}

export type SessionStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

const STORAGE_KEY = 'presence.session';
/** setTimeout cannot wait longer than this (about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

export function isAdmin(session: Session): boolean {
  return session.role === 'admin';
}

export class SessionStore {
  private state: SessionState;
  private readonly listeners = new Set<() => void>();
  private expiryTimer: TimerHandle | undefined;

  constructor(
    private readonly storage: SessionStorage,
    private readonly now: () => number = Date.now,
    private readonly timers: Timers = platformTimers,
  ) {
    const saved = readSession(storage);
    if (saved && saved.expiresAtMs > now()) {
      this.state = { session: saved, ended: null };
      this.armExpiryTimer(saved);
    } else {
      if (saved) storage.removeItem(STORAGE_KEY);
      this.state = { session: null, ended: saved ? 'expired' : null };
    }
  }

  /** The current state; the same object until something changes. */
  readonly getState = (): SessionState => this.state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  begin(session: Session): void {
    this.storage.setItem(STORAGE_KEY, JSON.stringify(session));
    this.armExpiryTimer(session);
    this.setState({ session, ended: null });
  }

  /** Ends the current session, if any; a second call for the same session does nothing. */
  end(reason: SessionEnd): void {
    if (!this.state.session) return;
    this.storage.removeItem(STORAGE_KEY);
    this.disarmExpiryTimer();
    this.setState({ session: null, ended: reason });
  }

  private setState(state: SessionState): void {
    this.state = state;
    for (const listener of [...this.listeners]) listener();
  }

  private armExpiryTimer(session: Session): void {
    this.disarmExpiryTimer();
    const remainingMs = session.expiresAtMs - this.now();
    this.expiryTimer = this.timers.setTimeout(() => {
      this.expiryTimer = undefined;
      if (this.state.session !== session) return;
      if (session.expiresAtMs <= this.now()) this.end('expired');
      else this.armExpiryTimer(session);
    }, Math.min(Math.max(remainingMs, 0), LONGEST_TIMER_MS));
  }

  private disarmExpiryTimer(): void {
    if (this.expiryTimer !== undefined) this.timers.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }
}

/** The saved session, or null when there is none or it is not one we wrote. */
function readSession(storage: SessionStorage): Session | null {
  const raw = storage.getItem(STORAGE_KEY);
  if (raw === null) return null;
  try {
    const value = JSON.parse(raw) as Partial<Session> | null;
    if (
      typeof value?.accessToken === 'string' &&
      typeof value.userId === 'string' &&
      typeof value.role === 'string' &&
      typeof value.displayName === 'string' &&
      typeof value.expiresAtMs === 'number'
    ) {
      return {
        accessToken: value.accessToken,
        userId: value.userId,
        role: value.role,
        displayName: value.displayName,
        expiresAtMs: value.expiresAtMs,
      };
    }
  } catch {
    // Not JSON: treated like no session at all.
  }
  return null;
}
