/**
 * The online count over time as an SVG line (readable by screen readers through its
 * title and summary), broken where nothing was recorded, with the same data as a table.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { AxisBottom, AxisLeft } from '@visx/axis';
import { Group } from '@visx/group';
import { scaleLinear, scaleTime } from '@visx/scale';
import { LinePath } from '@visx/shape';
import type { GetOnlineHistoryResponse } from '../gen/presence/admin/v1/admin_pb';

const WIDTH = 720;
const HEIGHT = 220;
const MARGIN = { top: 10, right: 16, bottom: 30, left: 44 };

export interface ChartPoint {
  atMs: number;
  maxOnline: number;
  meanOnline: number;
}

/** The points in runs of consecutive buckets: a missing bucket starts a new run. */
export function runsOf(points: ChartPoint[], stepMs: number): ChartPoint[][] {
  const runs: ChartPoint[][] = [];
  let previous: ChartPoint | undefined;
  for (const point of points) {
    const run = runs.at(-1);
    if (run && previous && point.atMs - previous.atMs <= stepMs) run.push(point);
    else runs.push([point]);
    previous = point;
  }
  return runs;
}

export function chartPoints(history: GetOnlineHistoryResponse): ChartPoint[] {
  return history.points.map((point) => ({
    atMs: point.at ? timestampMs(point.at) : 0,
    maxOnline: Number(point.maxOnline),
    meanOnline: point.meanOnline,
  }));
}

const dateTime = new Intl.DateTimeFormat('fr-FR', { dateStyle: 'short', timeStyle: 'short' });
/** Axis labels: the hour over a day (or two), the day over longer ranges. */
const hourTick = new Intl.DateTimeFormat('fr-FR', { timeStyle: 'short' });
const dayTick = new Intl.DateTimeFormat('fr-FR', { day: '2-digit', month: '2-digit' });
const count = new Intl.NumberFormat('fr-FR', { maximumFractionDigits: 1 });

/** « 1 mesure », « 0 mesure », « 3 mesures » (French: the plural starts at 2). */
function plural(value: number, noun: string): string {
  return `${count.format(value)} ${noun}${value >= 2 ? 's' : ''}`;
}

export function OnlineChart({ history, title }: { history: GetOnlineHistoryResponse; title: string }) {
  const points = chartPoints(history);
  const fromMs = history.from ? timestampMs(history.from) : 0;
  const toMs = history.to ? timestampMs(history.to) : 0;
  const stepMs = history.stepSeconds * 1000;
  const peak = Math.max(0, ...points.map((point) => point.maxOnline));
  const x = scaleTime({ domain: [new Date(fromMs), new Date(toMs)], range: [0, WIDTH - MARGIN.left - MARGIN.right] });
  const y = scaleLinear({ domain: [0, Math.max(1, peak)], range: [HEIGHT - MARGIN.top - MARGIN.bottom, 0], nice: true });
  const summary =
    points.length === 0
      ? 'Aucune mesure sur cette période.'
      : `${plural(points.length, 'mesure')}, au plus ${plural(peak, 'utilisateur')} en ligne.`;

  return (
    <figure className="online-chart" data-testid="online-chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-labelledby="online-chart-title online-chart-summary"
        data-points={points.length}
      >
        <title id="online-chart-title">{title}</title>
        <desc id="online-chart-summary">{summary}</desc>
        <Group left={MARGIN.left} top={MARGIN.top}>
          {/* Counts are whole: no « 0,5 » tick under a peak of 1. */}
          <AxisLeft scale={y} tickValues={y.ticks(4).filter(Number.isInteger)} tickFormat={(value) => count.format(Number(value))} />
          <AxisBottom
            top={HEIGHT - MARGIN.top - MARGIN.bottom}
            scale={x}
            numTicks={6}
            tickFormat={(value) => (toMs - fromMs <= 2 * 86_400_000 ? hourTick : dayTick).format(value as Date)}
          />
          {runsOf(points, stepMs).map((run) =>
            run.length === 1 ? (
              <circle key={run[0]?.atMs} cx={x(new Date(run[0]?.atMs ?? 0))} cy={y(run[0]?.maxOnline ?? 0)} r={2.5} className="online-chart__line" />
            ) : (
              <LinePath
                key={run[0]?.atMs}
                data={run}
                x={(point) => x(new Date(point.atMs))}
                y={(point) => y(point.maxOnline)}
                className="online-chart__line"
              />
            ),
          )}
        </Group>
      </svg>
      <figcaption>{summary}</figcaption>
      <details>
        <summary>Voir les données en tableau</summary>
        <table data-testid="online-chart-table">
          <caption className="visually-hidden">{title}</caption>
          <thead>
            <tr>
              <th scope="col">Période commençant à</th>
              <th scope="col">En ligne (maximum)</th>
              <th scope="col">En ligne (moyenne)</th>
            </tr>
          </thead>
          <tbody>
            {points.map((point) => (
              <tr key={point.atMs}>
                <th scope="row">
                  <time dateTime={new Date(point.atMs).toISOString()}>{dateTime.format(point.atMs)}</time>
                </th>
                <td>{count.format(point.maxOnline)}</td>
                <td>{count.format(point.meanOnline)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
