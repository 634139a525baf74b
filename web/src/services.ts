/**
 * The app's long-lived parts, wired once at start-up and independent of React: the
 * session store, the API clients, sign-in and sign-out, and the pinger that runs for as
 * long as there is a session.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { createApi, type Api } from './api';
import { browserLeaderElection } from './leader-election';
import { createPinger, type Pinger } from './pinger';
import { SessionStore, type Session } from './session';
import { documentVisibility } from './visibility';

export interface AppServices {
  store: SessionStore;
  api: Api;
  signIn: (username: string, password: string) => Promise<Session>;
  /** Stops pinging, calls Logout, and ends the session even if the call fails. */
  signOut: () => Promise<void>;
}

export function createAppServices(baseUrl: string): AppServices {
  const store = new SessionStore(window.sessionStorage);
  const api = createApi(baseUrl, store);
  const presence = keepPresence(store, api);

  return {
    store,
    api,
    async signIn(username, password) {
      const answer = await api.activity.login({ username, password });
      const session: Session = {
        accessToken: answer.accessToken,
        userId: answer.userId,
        role: answer.role,
        displayName: answer.displayName || username,
        expiresAtMs: answer.expiresAt ? timestampMs(answer.expiresAt) : Number.POSITIVE_INFINITY,
      };
      store.begin(session);
      return session;
    },
    async signOut() {
      // Stop pinging first, so no ping can follow the Logout that clears the activity key.
      presence.stop();
      try {
        await api.activity.logout({});
      } catch {
        // Signing out locally must not depend on the network; if the server missed it, the
        // token still expires and the user turns offline once the threshold has passed.
      } finally {
        store.end('signed-out');
      }
    },
  };
}

/** Runs a pinger while the store holds a session, one per session. */
function keepPresence(store: SessionStore, api: Api): { stop(): void } {
  let current: { session: Session; pinger: Pinger } | null = null;

  const stop = () => {
    current?.pinger.stop();
    current = null;
  };

  const follow = () => {
    const { session } = store.getState();
    if (session === current?.session) return;
    stop();
    if (!session) return;
    const pinger = createPinger({
      ping: () => api.activity.ping({}),
      visibility: documentVisibility(),
      // One pinging tab per user: two users signed in in two tabs both keep their status.
      election: browserLeaderElection(`presence-pinger:${session.userId}`),
      onUnauthenticated: () => {
        store.end('expired');
      },
    });
    current = { session, pinger };
    pinger.start();
  };

  store.subscribe(follow);
  follow();
  return { stop };
}
