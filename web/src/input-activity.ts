/**
 * Whether the person used this tab lately, for idle detection (« Absent »), which admins
 * may turn on. Only the time of the latest keyboard, pointer or touch input is kept, in
 * memory: nothing about which key or where, and nothing is stored or sent but the
 * yes/no of the ping. Listening starts only while the server says detection is on.
 */

/** The events that count as input. */
export const INPUT_EVENTS = ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart'] as const;

export interface InputActivity {
  /** Starts listening (idempotent); the time it starts counts as input. */
  start(): void;
  /** Stops listening and forgets the last input. */
  stop(): void;
  /** True when no input came for `delayMs` (false while stopped). */
  idleFor(delayMs: number): boolean;
  /** Calls `listener` at each input; returns the unsubscribe function. */
  onInput(listener: () => void): () => void;
}

export function createInputActivity(target: EventTarget, now: () => number = Date.now): InputActivity {
  let listening = false;
  let lastInputMs = 0;
  const listeners = new Set<() => void>();
  const onEvent = () => {
    lastInputMs = now();
    for (const listener of listeners) listener();
  };

  return {
    start() {
      if (listening) return;
      listening = true;
      lastInputMs = now();
      for (const name of INPUT_EVENTS) target.addEventListener(name, onEvent, { passive: true, capture: true });
    },
    stop() {
      if (!listening) return;
      listening = false;
      lastInputMs = 0;
      for (const name of INPUT_EVENTS) target.removeEventListener(name, onEvent, { capture: true });
    },
    idleFor(delayMs) {
      return listening && now() - lastInputMs >= delayMs;
    },
    onInput(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
