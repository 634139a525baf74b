/**
 * The online count over the last `rangeSeconds`, fetched again every minute (the server
 * samples once a minute, so sooner would show nothing new).
 */
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { useEffect, useState } from 'react';
import type { Api } from '../api';
import { requestErrorMessage } from '../errors';
import type { GetOnlineHistoryResponse } from '../gen/presence/admin/v1/admin_pb';

export const HISTORY_REFRESH_MS = 60_000;

export interface OnlineHistory {
  history: GetOnlineHistoryResponse | null;
  error: string;
}

export function useOnlineHistory(api: Api, rangeSeconds: number): OnlineHistory {
  const [loaded, setLoaded] = useState<OnlineHistory & { range: number }>({ range: 0, history: null, error: '' });

  useEffect(() => {
    const abort = new AbortController();
    const fetchHistory = async () => {
      const now = Date.now();
      try {
        const history = await api.admin.getOnlineHistory(
          { from: timestampFromMs(now - rangeSeconds * 1000), to: timestampFromMs(now), stepSeconds: 0 },
          { signal: abort.signal },
        );
        setLoaded({ range: rangeSeconds, history, error: '' });
      } catch (failure) {
        if (abort.signal.aborted) return;
        setLoaded((previous) => ({ ...previous, range: rangeSeconds, error: requestErrorMessage(failure) }));
      }
    };
    void fetchHistory();
    const timer = setInterval(() => void fetchHistory(), HISTORY_REFRESH_MS);
    return () => {
      abort.abort();
      clearInterval(timer);
    };
  }, [api, rangeSeconds]);

  return loaded.range === rangeSeconds ? loaded : { history: null, error: '' };
}
