// @vitest-environment jsdom
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RelativeTime, useNow } from './RelativeTime';

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function LastPing({ atMs }: { atMs: number }) {
  const nowMs = useNow(5_000);
  return (
    <p data-testid="ping">
      <RelativeTime value={timestampFromMs(atMs)} nowMs={nowMs} />
    </p>
  );
}

const shown = () => screen.getByTestId('ping').querySelector('time')?.firstChild?.textContent?.replace(/\s/g, ' ');

describe('a relative time', () => {
  it('stays current without a reload', () => {
    vi.useFakeTimers();
    const start = Date.now();
    render(<LastPing atMs={start - 50_000} />);
    expect(shown()).toBe('il y a 50 s');
    act(() => {
      vi.advanceTimersByTime(15_000);
    });
    expect(shown()).toBe('il y a 1 min');
    act(() => {
      vi.advanceTimersByTime(3_600_000);
    });
    expect(shown()).toBe('il y a 1 h');
  });

  it('can be focused from the keyboard to show the exact time', () => {
    render(<LastPing atMs={Date.now()} />);
    const time = screen.getByTestId('ping').querySelector('time');
    time?.focus();
    expect(document.activeElement).toBe(time);
    expect(time?.dataset.exact).toBe(time?.getAttribute('title'));
  });
});
