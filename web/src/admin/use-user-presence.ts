/**
 * One user's status with its evidence (GetUserPresence), fetched again every
 * `PRESENCE_REFRESH_MS` so the page follows the user coming online or leaving.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { useEffect, useState } from 'react';
import type { Api } from '../api';
import { requestErrorMessage } from '../errors';
import type { UserPresence } from '../gen/presence/admin/v1/admin_pb';

export const PRESENCE_REFRESH_MS = 15_000;
export const USER_NOT_FOUND_MESSAGE = "Cet utilisateur n'existe pas (ou plus).";

export interface LoadedPresence {
  presence: UserPresence | null;
  error: string;
}

export function useUserPresence(api: Api, userId: string): LoadedPresence {
  const [loaded, setLoaded] = useState<LoadedPresence & { userId: string }>({ userId: '', presence: null, error: '' });

  useEffect(() => {
    const abort = new AbortController();
    const fetchPresence = async () => {
      try {
        const presence = await api.admin.getUserPresence({ userId }, { signal: abort.signal });
        setLoaded({ userId, presence, error: '' });
      } catch (failure) {
        if (abort.signal.aborted) return;
        const code = ConnectError.from(failure).code;
        const error =
          code === Code.NotFound || code === Code.InvalidArgument ? USER_NOT_FOUND_MESSAGE : requestErrorMessage(failure);
        // What was shown stays (with the error above it) when a refresh fails.
        setLoaded((previous) => ({ userId, presence: previous.userId === userId ? previous.presence : null, error }));
      }
    };
    void fetchPresence();
    const timer = setInterval(() => void fetchPresence(), PRESENCE_REFRESH_MS);
    return () => {
      abort.abort();
      clearInterval(timer);
    };
  }, [api, userId]);

  return loaded.userId === userId ? loaded : { presence: null, error: '' };
}
