import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SessionStore, type Session, type SessionStorage } from './session';

class MemoryStorage implements SessionStorage {
  readonly items = new Map<string, string>();
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
}

const session: Session = {
  accessToken: 'jwt',
  userId: '0b0c5b8e-0000-4000-8000-000000000001',
  role: 'user',
  displayName: 'User Test',
  expiresAtMs: 60_000,
};

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('SessionStore', () => {
  it('keeps the session for the tab across reloads', () => {
    const storage = new MemoryStorage();
    new SessionStore(storage).begin(session);

    expect(new SessionStore(storage).getState()).toEqual({ session, ended: null });
  });

  it('forgets a session that expired while the tab was away, and says so', () => {
    const storage = new MemoryStorage();
    new SessionStore(storage).begin(session);
    vi.setSystemTime(60_000);

    expect(new SessionStore(storage).getState()).toEqual({ session: null, ended: 'expired' });
    expect(storage.items.size).toBe(0);
  });

  it('ends the session by itself when the token expires', () => {
    const store = new SessionStore(new MemoryStorage());
    const listener = vi.fn();
    store.subscribe(listener);
    store.begin(session);
    vi.advanceTimersByTime(59_999);
    expect(store.getState().session).toBe(session);

    vi.advanceTimersByTime(1);
    expect(store.getState()).toEqual({ session: null, ended: 'expired' });
    expect(listener).toHaveBeenCalledTimes(2);
  });

  it('ends once, keeping the first reason', () => {
    const store = new SessionStore(new MemoryStorage());
    store.begin(session);
    store.end('signed-out');
    store.end('expired');

    expect(store.getState()).toEqual({ session: null, ended: 'signed-out' });
  });

  it('ignores storage content it did not write', () => {
    const storage = new MemoryStorage();
    storage.setItem('presence.session', '{not json');
    expect(new SessionStore(storage).getState()).toEqual({ session: null, ended: null });
  });
});
