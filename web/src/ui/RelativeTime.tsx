/**
 * A time shown as « il y a 3 min », current as long as `nowMs` is, with the exact date and
 * time on hover (title) and on keyboard focus (a tooltip drawn from `data-exact`); screen
 * readers read both.
 */
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { useEffect, useState } from 'react';
import { formatDateTime, isoDateTime, timeAgo, UNKNOWN } from '../format';

/** The time now, again every `periodMs`: one clock for a whole table, not one per cell. */
export function useNow(periodMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => {
      setNow(Date.now());
    }, periodMs);
    return () => {
      clearInterval(timer);
    };
  }, [periodMs]);
  return now;
}

export function RelativeTime({ value, nowMs }: { value: Timestamp | undefined; nowMs: number }) {
  if (!value) return <>{UNKNOWN}</>;
  const exact = formatDateTime(value);
  return (
    // Focusable so a keyboard user can bring up the exact time, as hovering does.
    <time className="relative-time" dateTime={isoDateTime(value)} title={exact} data-exact={exact} tabIndex={0}>
      {timeAgo(timestampMs(value), nowMs)}
      <span className="visually-hidden"> ({exact})</span>
    </time>
  );
}
