/**
 * Test doubles for the pinger's collaborators: a visibility switch and a Web Locks
 * manager shared by several simulated tabs; and an in-memory sessionStorage.
 */
import type { LockManagerLike } from '../leader-election';
import type { SessionStorage } from '../session';
import type { VisibilitySource } from '../visibility';

/** A page whose visibility the test flips by hand. */
export class FakeVisibility implements VisibilitySource {
  private listeners = new Set<(visible: boolean) => void>();

  constructor(private visible = true) {}

  isVisible(): boolean {
    return this.visible;
  }

  subscribe(listener: (visible: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(visible: boolean): void {
    if (visible === this.visible) return;
    this.visible = visible;
    for (const listener of [...this.listeners]) listener(visible);
  }
}

interface Waiter {
  signal: AbortSignal;
  grant: () => void;
}

/**
 * An in-memory stand-in for `navigator.locks`, shared by every simulated tab of one
 * browser: exclusive locks granted in request order, pending requests abortable.
 */
export class FakeLockManager implements LockManagerLike {
  private held = new Set<string>();
  private waiting = new Map<string, Waiter[]>();

  request(name: string, options: { signal: AbortSignal }, callback: () => Promise<void>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        signal: options.signal,
        grant: () => {
          this.held.add(name);
          // Like the real API, the callback runs asynchronously after the grant.
          void Promise.resolve()
            .then(callback)
            .then(resolve, reject)
            .finally(() => {
              this.held.delete(name);
              this.grantNext(name);
            });
        },
      };
      options.signal.addEventListener('abort', () => {
        const queue = this.waiting.get(name) ?? [];
        const index = queue.indexOf(waiter);
        if (index === -1) return; // Already granted: aborting no longer applies.
        queue.splice(index, 1);
        reject(new DOMException('The lock request was aborted.', 'AbortError'));
      });
      const queue = this.waiting.get(name) ?? [];
      queue.push(waiter);
      this.waiting.set(name, queue);
      this.grantNext(name);
    });
  }

  isHeld(name: string): boolean {
    return this.held.has(name);
  }

  private grantNext(name: string): void {
    if (this.held.has(name)) return;
    const next = this.waiting.get(name)?.shift();
    next?.grant();
  }
}

/** sessionStorage's part that the session store uses, in memory. */
export function memoryStorage(): SessionStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => items.set(key, value),
    removeItem: (key) => items.delete(key),
  };
}
