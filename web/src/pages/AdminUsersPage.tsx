/**
 * Who is online: one page of users with their status, counts for everyone, a filter, a
 * search (kept in the URL as `?q=`, so a link shows the same users), pagination, and
 * live updates from the server (no refresh button, no polling). Times read « il y a 3 min »
 * and stay current; the page shown can be sorted by last seen; a username opens that
 * user's page (why they have their status).
 */
import { useState } from 'react';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Link, useLocation, useSearchParams } from 'react-router';
import type { StreamState } from '../admin/status-stream';
import { useOnlineHistory } from '../admin/use-online-history';
import { useStatusPage } from '../admin/use-status-page';
import { browsersLabel, sourceLabel, stateLabel } from '../format';
import { PresenceState, StatusFilter, type UserStatus } from '../gen/presence/admin/v1/admin_pb';
import { paths, type BackTo } from '../ui/paths';
import { RelativeTime, useNow } from '../ui/RelativeTime';
import { OnlineChart } from '../ui/OnlineChart';
import { SearchField } from '../ui/SearchField';
import { usePageTitle, useServices } from '../ui/services-context';

const FILTERS = [
  { value: StatusFilter.ALL, label: 'Tous' },
  { value: StatusFilter.ONLINE, label: 'En ligne' },
  { value: StatusFilter.OFFLINE, label: 'Hors ligne' },
];

const STREAM_LABELS: Record<StreamState, string> = {
  connecting: 'connexion en cours…',
  live: 'actives',
  reconnecting: 'interrompues, reconnexion en cours…',
  refused: 'indisponibles',
};

const countFormat = new Intl.NumberFormat('fr-FR');

/** How often relative times (« il y a 3 min ») are brought up to date. */
const CLOCK_PERIOD_MS = 5_000;

/** The rows in username order (the server's), or by last seen, most recent first or last. */
type Sort = 'username' | 'recent-first' | 'recent-last';

const NEXT_SORT: Record<Sort, Sort> = { username: 'recent-first', 'recent-first': 'recent-last', 'recent-last': 'username' };
const ARIA_SORT: Record<Sort, 'none' | 'descending' | 'ascending'> = {
  username: 'none',
  'recent-first': 'descending',
  'recent-last': 'ascending',
};

const lastSeenMs = (status: UserStatus) => (status.lastSeenAt ? timestampMs(status.lastSeenAt) : -Infinity);

/** The page's rows in the order chosen; users never seen come last either way. */
export function sortedRows(statuses: UserStatus[], sort: Sort): UserStatus[] {
  if (sort === 'username') return statuses;
  const direction = sort === 'recent-first' ? -1 : 1;
  return [...statuses].sort((a, b) => {
    const [left, right] = [lastSeenMs(a), lastSeenMs(b)];
    if (left === right) return 0;
    if (left === -Infinity) return 1;
    if (right === -Infinity) return -1;
    return direction * (left - right);
  });
}

const HISTORY_RANGES = [
  { seconds: 86_400, label: '24 heures' },
  { seconds: 7 * 86_400, label: '7 jours' },
  { seconds: 30 * 86_400, label: '30 jours' },
];

export function AdminUsersPage() {
  usePageTitle('Utilisateurs');
  const { api } = useServices();
  const [filter, setFilter] = useState(StatusFilter.ALL);
  const [searchParams, setSearchParams] = useSearchParams();
  const query = searchParams.get('q') ?? '';
  // The token of every page up to the current one (the first page's is empty), for the
  // query they were issued for: another query starts again from the first page.
  const [paging, setPaging] = useState({ query, tokens: [''] });
  const pageTokens = paging.query === query ? paging.tokens : [''];
  const setPageTokens = (change: (tokens: string[]) => string[]) => {
    setPaging((previous) => ({ query, tokens: change(previous.query === query ? previous.tokens : ['']) }));
  };
  const currentToken = pageTokens[pageTokens.length - 1] ?? '';
  const { page, error, loading, stream } = useStatusPage(api, filter, query, currentToken);
  const [sort, setSort] = useState<Sort>('username');
  const nowMs = useNow(CLOCK_PERIOD_MS);
  const location = useLocation();
  const backTo: BackTo = { list: location.pathname + location.search };

  const chooseFilter = (next: StatusFilter) => {
    setFilter(next);
    setPageTokens(() => ['']);
  };
  const search = (next: string) => {
    setSearchParams(next ? { q: next } : {}, { replace: true });
  };

  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Statuts des utilisateurs</h1>
      <p>
        <Link to={paths.adminSettings}>Modifier le seuil d'activité</Link>
      </p>

      <p className="live" role="status" data-testid="live-status" data-state={stream}>
        Mises à jour en direct : {STREAM_LABELS[stream]}
      </p>

      {page?.degraded && (
        <p className="notice notice--warning" role="status" data-testid="degraded-banner">
          Mode dégradé : Redis est indisponible, statuts calculés depuis l'historique de connexion.
        </p>
      )}
      {error && (
        <p className="error" role="alert" data-testid="users-error">
          {error}
        </p>
      )}

      {page && (
        <dl className="counts" aria-label="Décompte des utilisateurs">
          <div>
            <dt>Total</dt>
            <dd data-testid="count-total">{countFormat.format(page.totalCount)}</dd>
          </div>
          <div>
            <dt>En ligne</dt>
            <dd data-testid="count-online">{countFormat.format(page.onlineCount)}</dd>
          </div>
          <div>
            <dt>Absents</dt>
            <dd data-testid="count-away">{countFormat.format(page.awayCount)}</dd>
          </div>
          <div>
            <dt>Hors ligne</dt>
            <dd data-testid="count-offline">{countFormat.format(page.offlineCount)}</dd>
          </div>
          <div>
            <dt>Seuil</dt>
            <dd>{page.thresholdMinutes} min</dd>
          </div>
        </dl>
      )}

      <OnlineTrend />

      <SearchField query={query} onSearch={search} />

      <fieldset className="filter">
        <legend>Afficher</legend>
        {FILTERS.map(({ value, label }) => (
          <label key={value}>
            <input
              type="radio"
              name="status-filter"
              value={value}
              checked={filter === value}
              onChange={() => {
                chooseFilter(value);
              }}
            />
            {label}
          </label>
        ))}
      </fieldset>

      <div className="table-wrap">
        <table className="users-table" aria-busy={loading}>
          <caption className="visually-hidden">Utilisateurs, page {pageTokens.length}</caption>
          <thead>
            <tr>
              <th scope="col">Utilisateur</th>
              <th scope="col">Nom affiché</th>
              <th scope="col">Statut</th>
              <th scope="col" className="users-table__sortable" aria-sort={ARIA_SORT[sort]}>
                <button
                  type="button"
                  className="sort"
                  data-testid="sort-last-seen"
                  onClick={() => {
                    setSort(NEXT_SORT[sort]);
                  }}
                >
                  Dernière activité
                  <span aria-hidden="true">{sort === 'recent-first' ? ' ↓' : sort === 'recent-last' ? ' ↑' : ' ↕'}</span>
                  <span className="visually-hidden">
                    {sort === 'username'
                      ? ' (trier cette page, plus récente en premier)'
                      : sort === 'recent-first'
                        ? ' (triée, plus récente en premier ; plus ancienne en premier au clic)'
                        : ' (triée, plus ancienne en premier ; ordre alphabétique au clic)'}
                  </span>
                </button>
              </th>
              <th scope="col">Dernière connexion</th>
              <th scope="col">Source</th>
            </tr>
          </thead>
          <tbody>
            {page &&
              sortedRows(page.statuses, sort).map((status) => (
                <UserRow key={status.userId} status={status} nowMs={nowMs} backTo={backTo} />
              ))}
          </tbody>
        </table>
      </div>
      {page?.statuses.length === 0 && (
        <p data-testid="no-users">
          {query ? `Aucun utilisateur ne correspond à « ${query} ».` : 'Aucun utilisateur à afficher.'}
        </p>
      )}

      <nav className="pagination" aria-label="Pagination">
        <button
          type="button"
          disabled={pageTokens.length === 1}
          onClick={() => {
            setPageTokens((tokens) => tokens.slice(0, -1));
          }}
        >
          Page précédente
        </button>
        <span>Page {pageTokens.length}</span>
        <button
          type="button"
          disabled={!page?.nextPageToken}
          onClick={() => {
            const next = page?.nextPageToken;
            if (next) setPageTokens((tokens) => [...tokens, next]);
          }}
        >
          Page suivante
        </button>
      </nav>
    </section>
  );
}

function away(status: UserStatus): boolean {
  return status.online && status.state === PresenceState.AWAY;
}

function badgeClass(status: UserStatus): string {
  if (away(status)) return 'badge--away';
  return status.online ? 'badge--online' : 'badge--offline';
}

function UserRow({ status, nowMs, backTo }: { status: UserStatus; nowMs: number; backTo: BackTo }) {
  return (
    <tr data-testid={`user-row-${status.username}`} data-online={status.online}>
      <th scope="row">
        <Link to={paths.adminUser(status.userId)} state={backTo} title={`Pourquoi ce statut : ${status.username}`}>
          {status.username}
        </Link>
      </th>
      <td data-label="Nom affiché">{status.displayName}</td>
      <td data-label="Statut">
        <span
          className={`badge ${badgeClass(status)}`}
          data-testid={`status-badge-${status.username}`}
          title={away(status) ? 'En ligne, mais sans saisie sur aucun de ses navigateurs depuis le délai d’absence' : undefined}
        >
          <span className="badge__dot" aria-hidden="true" />
          {stateLabel(status.online, status.state)}
        </span>
        {status.activeBrowsers > 1 && (
          <span
            className="browsers"
            data-testid={`browsers-${status.username}`}
            title="Navigateurs de cette personne qui ont signalé une activité dans le seuil"
          >
            {browsersLabel(status.activeBrowsers)}
          </span>
        )}
      </td>
      <td data-label="Dernière activité">
        <RelativeTime value={status.lastActivityAt} nowMs={nowMs} />
      </td>
      <td data-label="Dernière connexion">
        <RelativeTime value={status.lastLoginAt} nowMs={nowMs} />
      </td>
      <td data-label="Source">{sourceLabel(status.source)}</td>
    </tr>
  );
}

/** How many users were online over the chosen range, refreshed every minute. */
function OnlineTrend() {
  const { api } = useServices();
  const [range, setRange] = useState(HISTORY_RANGES[0] ?? { seconds: 86_400, label: '24 heures' });
  const { history, error } = useOnlineHistory(api, range.seconds);
  return (
    <section aria-labelledby="trend-title" className="trend">
      <h2 id="trend-title">Utilisateurs en ligne au fil du temps</h2>
      <fieldset className="filter">
        <legend>Période</legend>
        {HISTORY_RANGES.map((choice) => (
          <label key={choice.seconds}>
            <input
              type="radio"
              name="history-range"
              checked={range.seconds === choice.seconds}
              onChange={() => {
                setRange(choice);
              }}
            />
            {choice.label}
          </label>
        ))}
      </fieldset>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {history && <OnlineChart history={history} title={`Utilisateurs en ligne, ${range.label}`} />}
    </section>
  );
}
