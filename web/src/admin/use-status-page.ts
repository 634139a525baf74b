/**
 * One page of ListUserStatuses as React state, kept current by the WatchUserStatuses
 * stream: events change rows at once, and ask for the page again (at most once per
 * REFETCH_DELAY_MS) so counts and filtered pages follow. No polling: without events,
 * nothing is fetched.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { Api } from '../api';
import { requestErrorMessage } from '../errors';
import type { ListUserStatusesResponse, StatusFilter, UserStatus } from '../gen/presence/admin/v1/admin_pb';
import { reactionTo, withStatus } from './live-statuses';
import { watchWithReconnect, type StreamState } from './status-stream';

export const PAGE_SIZE = 50;
/** Events arriving in a burst (a snapshot, many logins) cost one refetch, not one each. */
export const REFETCH_DELAY_MS = 500;

export interface StatusPage {
  page: ListUserStatusesResponse | null;
  error: string;
  loading: boolean;
  stream: StreamState;
}

/** The outcome of the latest request, and which page (filter, query and token) it was for. */
interface Loaded {
  key: string;
  page: ListUserStatusesResponse | null;
  error: string;
}

export function useStatusPage(api: Api, filter: StatusFilter, query: string, pageToken: string): StatusPage {
  const key = `${filter}:${query}:${pageToken}`;
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [stream, setStream] = useState<StreamState>('connecting');
  // Answers can arrive out of order; only the latest request may set the page.
  const latestRequest = useRef(0);
  const pendingRefetch = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const fetchPage = useCallback(async () => {
    const request = ++latestRequest.current;
    try {
      const answer = await api.admin.listUserStatuses({ pageSize: PAGE_SIZE, pageToken, filter, query });
      if (request === latestRequest.current) setLoaded({ key, page: answer, error: '' });
    } catch (failure) {
      if (request !== latestRequest.current) return;
      // Keep showing the rows we had for this page: a failed refresh is no reason to blank it.
      setLoaded((previous) => ({
        key,
        page: previous?.key === key ? previous.page : null,
        error: requestErrorMessage(failure),
      }));
    }
  }, [api, filter, query, pageToken, key]);

  useEffect(() => {
    void fetchPage();
  }, [fetchPage]);

  // A refetch scheduled for one page must fetch whichever page is shown when it fires.
  const fetchCurrentPage = useRef(fetchPage);
  useEffect(() => {
    fetchCurrentPage.current = fetchPage;
  }, [fetchPage]);

  const scheduleRefetch = useCallback(() => {
    if (pendingRefetch.current !== undefined) return;
    pendingRefetch.current = setTimeout(() => {
      pendingRefetch.current = undefined;
      void fetchCurrentPage.current();
    }, REFETCH_DELAY_MS);
  }, []);

  useEffect(
    () => () => {
      clearTimeout(pendingRefetch.current);
      pendingRefetch.current = undefined;
    },
    [],
  );

  const applyStatus = useCallback((status: UserStatus) => {
    setLoaded((current) =>
      current?.page ? { ...current, page: { ...current.page, statuses: withStatus(current.page.statuses, status) } } : current,
    );
  }, []);

  // One stream for the page's lifetime: page, filter and query changes only change what is fetched.
  useEffect(() => {
    const abort = new AbortController();
    void watchWithReconnect({
      open: (signal) => api.admin.watchUserStatuses({}, { signal }),
      onEvent: (event) => {
        const reaction = reactionTo(event);
        if (reaction.kind === 'apply') applyStatus(reaction.status);
        if (reaction.kind === 'refetch' || (reaction.kind === 'apply' && reaction.refetch)) scheduleRefetch();
      },
      onState: setStream,
      signal: abort.signal,
    });
    return () => {
      abort.abort();
    };
  }, [api, applyStatus, scheduleRefetch]);

  return {
    // While another page loads, the previous one stays on screen (marked busy).
    page: loaded?.page ?? null,
    error: loaded?.key === key ? loaded.error : '',
    loading: loaded?.key !== key,
    stream,
  };
}
