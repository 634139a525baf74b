import { describe, expect, it } from 'vitest';
import { createInputActivity } from './input-activity';

function clock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('input activity', () => {
  it('is idle only after the delay without input, and input resets it', () => {
    const target = new EventTarget();
    const time = clock();
    const input = createInputActivity(target, time.now);
    input.start();
    time.advance(4 * 60_000);
    expect(input.idleFor(5 * 60_000)).toBe(false);
    time.advance(60_000);
    expect(input.idleFor(5 * 60_000)).toBe(true);
    target.dispatchEvent(new Event('pointermove'));
    expect(input.idleFor(5 * 60_000)).toBe(false);
  });

  it('counts keyboard, pointer and touch input, and tells listeners', () => {
    const target = new EventTarget();
    const input = createInputActivity(target, clock().now);
    let heard = 0;
    input.onInput(() => heard++);
    input.start();
    for (const name of ['keydown', 'pointerdown', 'wheel', 'touchstart']) target.dispatchEvent(new Event(name));
    expect(heard).toBe(4);
  });

  it('listens to nothing until started and after stopped', () => {
    const target = new EventTarget();
    const time = clock();
    const input = createInputActivity(target, time.now);
    let heard = 0;
    input.onInput(() => heard++);
    target.dispatchEvent(new Event('keydown'));
    expect(heard).toBe(0);
    expect(input.idleFor(0)).toBe(false);
    input.start();
    input.stop();
    target.dispatchEvent(new Event('keydown'));
    expect(heard).toBe(0);
    time.advance(10 * 60_000);
    expect(input.idleFor(60_000)).toBe(false);
  });
});
