/**
 * The timer functions the background loops use, behind an interface so tests can drive
 * them with fake time and so no loop reaches for globals it cannot be handed.
 */

export type TimerHandle = ReturnType<typeof setTimeout>;

export interface Timers {
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The platform's timers, looked up at call time so fake timers installed later still apply. */
export const platformTimers: Timers = {
  setTimeout: (callback, delayMs) => globalThis.setTimeout(callback, delayMs),
  clearTimeout: (handle) => {
    globalThis.clearTimeout(handle);
  },
};
