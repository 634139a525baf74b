/**
 * A value fetched at once and again every `periodMs`, for what the server does not stream
 * (a user's presence, the online count history). A change of `key` starts over (nothing
 * shown from the previous key); a failed refresh keeps what was shown, with the error.
 */
import { useEffect, useRef, useState } from 'react';
import { requestErrorMessage } from '../errors';

export interface Polled<T> {
  value: T | null;
  error: string;
}

export function usePolled<T>(
  key: string,
  periodMs: number,
  fetch: (signal: AbortSignal) => Promise<T>,
  describeError: (failure: unknown) => string = requestErrorMessage,
): Polled<T> {
  const [loaded, setLoaded] = useState<Polled<T> & { key: string | null }>({ key: null, value: null, error: '' });
  // The latest functions, without refetching when only their identity changes.
  const calls = useRef({ fetch, describeError });
  useEffect(() => {
    calls.current = { fetch, describeError };
  }, [fetch, describeError]);

  useEffect(() => {
    const abort = new AbortController();
    const load = async () => {
      try {
        const value = await calls.current.fetch(abort.signal);
        setLoaded({ key, value, error: '' });
      } catch (failure) {
        if (abort.signal.aborted) return;
        const error = calls.current.describeError(failure);
        setLoaded((previous) => ({ key, value: previous.key === key ? previous.value : null, error }));
      }
    };
    void load();
    const timer = setInterval(() => void load(), periodMs);
    return () => {
      abort.abort();
      clearInterval(timer);
    };
  }, [key, periodMs]);

  return loaded.key === key ? loaded : { value: null, error: '' };
}
