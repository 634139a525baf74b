/**
 * The online count over the last `rangeSeconds`, fetched again every minute (the server
 * samples once a minute, so sooner would show nothing new).
 */
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { Api } from '../api';
import type { GetOnlineHistoryResponse } from '../gen/presence/admin/v1/admin_pb';
import { usePolled } from './use-polled';

export const HISTORY_REFRESH_MS = 60_000;

export interface OnlineHistory {
  history: GetOnlineHistoryResponse | null;
  error: string;
}

export function useOnlineHistory(api: Api, rangeSeconds: number): OnlineHistory {
  const { value, error } = usePolled(String(rangeSeconds), HISTORY_REFRESH_MS, (signal) => {
    const now = Date.now();
    return api.admin.getOnlineHistory(
      { from: timestampFromMs(now - rangeSeconds * 1000), to: timestampFromMs(now), stepSeconds: 0 },
      { signal },
    );
  });
  return { history: value, error };
}
