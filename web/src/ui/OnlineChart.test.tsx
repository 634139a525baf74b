// @vitest-environment jsdom
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { cleanup, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { GetOnlineHistoryResponseSchema } from '../gen/presence/admin/v1/admin_pb';
import { OnlineChart, runsOf } from './OnlineChart';

afterEach(cleanup);

const FROM = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

/** Minutes 0–2 and 5–6 recorded, 3–4 missing. */
function historyWithAGap() {
  const minutes = [0, 1, 2, 5, 6];
  return create(GetOnlineHistoryResponseSchema, {
    points: minutes.map((minute) => ({
      at: timestampFromMs(FROM + minute * MINUTE),
      maxOnline: BigInt(minute + 1),
      meanOnline: minute + 0.5,
      samples: 1,
    })),
    stepSeconds: 60,
    from: timestampFromMs(FROM),
    to: timestampFromMs(FROM + 10 * MINUTE),
  });
}

describe('the online chart', () => {
  it('draws one line per run of recorded buckets: a gap is not drawn as zeros', () => {
    const { container } = render(<OnlineChart history={historyWithAGap()} title="En ligne, 24 heures" />);
    expect(container.querySelectorAll('path.online-chart__line')).toHaveLength(2);
    expect(screen.getByRole('img', { name: /En ligne, 24 heures.*5 mesures, au plus 7 utilisateurs/ })).toBeTruthy();
  });

  it('gives the same data as a table, one row per recorded bucket', () => {
    render(<OnlineChart history={historyWithAGap()} title="En ligne, 24 heures" />);
    const rows = within(screen.getByTestId('online-chart-table')).getAllByRole('row').slice(1);
    expect(rows).toHaveLength(5);
    expect(rows.map((row) => row.querySelector('td')?.textContent)).toEqual(['1', '2', '3', '6', '7']);
    expect(rows[3]?.querySelectorAll('td')[1]?.textContent).toBe('5,5');
    expect(rows[0]?.querySelector('time')?.getAttribute('datetime')).toBe('2026-01-01T00:00:00.000Z');
  });

  it('says when nothing was recorded', () => {
    const empty = create(GetOnlineHistoryResponseSchema, { stepSeconds: 60 });
    render(<OnlineChart history={empty} title="En ligne" />);
    expect(screen.getAllByText('Aucune mesure sur cette période.').length).toBeGreaterThan(0);
  });

  it('labels the count axis with whole numbers only', () => {
    const one = create(GetOnlineHistoryResponseSchema, {
      points: [{ at: timestampFromMs(FROM), maxOnline: 1n, meanOnline: 1, samples: 1 }],
      stepSeconds: 60,
      from: timestampFromMs(FROM),
      to: timestampFromMs(FROM + 10 * MINUTE),
    });
    const { container } = render(<OnlineChart history={one} title="En ligne" />);
    expect(screen.getByRole('img', { name: /1 mesure, au plus 1 utilisateur en ligne/ })).toBeTruthy();
    const labels = [...container.querySelectorAll('.visx-axis-left .visx-axis-tick text')].map((tick) => tick.textContent);
    expect(labels).toEqual(['0', '1']);
  });

  it('splits runs where a bucket is missing', () => {
    const at = (minute: number) => ({ atMs: minute * MINUTE, maxOnline: 1, meanOnline: 1 });
    expect(runsOf([at(0), at(1), at(3), at(4), at(9)], MINUTE).map((run) => run.length)).toEqual([2, 2, 1]);
    expect(runsOf([], MINUTE)).toEqual([]);
  });
});
