/**
 * One user's status with its evidence (GetUserPresence), fetched again every
 * `PRESENCE_REFRESH_MS` so the page follows the user coming online or leaving.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import type { Api } from '../api';
import { requestErrorMessage } from '../errors';
import type { UserPresence } from '../gen/presence/admin/v1/admin_pb';
import { usePolled } from './use-polled';

export const PRESENCE_REFRESH_MS = 15_000;
export const USER_NOT_FOUND_MESSAGE = "Cet utilisateur n'existe pas (ou plus).";

export interface LoadedPresence {
  presence: UserPresence | null;
  error: string;
}

function presenceError(failure: unknown): string {
  const code = ConnectError.from(failure).code;
  return code === Code.NotFound || code === Code.InvalidArgument ? USER_NOT_FOUND_MESSAGE : requestErrorMessage(failure);
}

export function useUserPresence(api: Api, userId: string): LoadedPresence {
  const { value, error } = usePolled(
    userId,
    PRESENCE_REFRESH_MS,
    (signal) => api.admin.getUserPresence({ userId }, { signal }),
    presenceError,
  );
  return { presence: value, error };
}
