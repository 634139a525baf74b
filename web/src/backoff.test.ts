import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff';

const policy = { baseMs: 1_000, maxMs: 30_000 };

describe('backoffDelay', () => {
  it('doubles the cap on every attempt up to the maximum', () => {
    const almostOne = () => 0.999_999;
    const delays = [1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt, policy, almostOne));
    expect(delays).toEqual([999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999]);
  });

  it('spreads delays over the whole range below the cap (full jitter)', () => {
    expect(backoffDelay(3, policy, () => 0)).toBe(0);
    expect(backoffDelay(3, policy, () => 0.25)).toBe(1_000);
  });
});
