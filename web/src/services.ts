/**
 * The app's long-lived parts, wired once at start-up and independent of React: the
 * session store, the API clients, sign-in and sign-out, and the pinger that runs for as
 * long as there is a session.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { createApi, type Api } from './api';
import { backoffDelay } from './backoff';
import { browserId } from './browser-id';
import { isTransientFailure } from './errors';
import { browserLeaderElection, type LeaderElection } from './leader-election';
import { createInputActivity } from './input-activity';
import { createPinger, type Pinger } from './pinger';
import { SessionStore, type Session, type SessionStorage } from './session';
import { documentVisibility, type VisibilitySource } from './visibility';

export interface AppServices {
  store: SessionStore;
  api: Api;
  signIn: (username: string, password: string) => Promise<Session>;
  /** Stops pinging, ends the session, then calls Logout (retried; the session is over either way). */
  signOut: () => Promise<void>;
}

/** What the services are built from: the browser's, or test doubles. */
export interface ServiceDeps {
  storage: SessionStorage;
  createApi: (store: SessionStore) => Api;
  visibility: () => VisibilitySource;
  election: (name: string) => LeaderElection;
  /** This browser's id (see browser-id.ts), sent with every ping and the logout. */
  browserId: () => string;
  /** Where keyboard, pointer and touch input is heard, for idle detection (the window). */
  inputEvents: () => EventTarget;
}

export function browserServiceDeps(baseUrl: string): ServiceDeps {
  return {
    storage: window.sessionStorage,
    createApi: (store) => createApi(baseUrl, store),
    visibility: () => documentVisibility(),
    election: browserLeaderElection,
    browserId: () => browserId(safeLocalStorage(), (bytes) => void crypto.getRandomValues(bytes)),
    inputEvents: () => window,
  };
}

/** localStorage, or undefined where merely touching it throws (some privacy modes). */
function safeLocalStorage(): Storage | undefined {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
}

export function createAppServices(deps: ServiceDeps): AppServices {
  const store = new SessionStore(deps.storage);
  const api = deps.createApi(store);
  const presence = keepPresence(store, api, deps);

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
      const { session } = store.getState();
      // Stop pinging first, so no ping can follow the Logout that clears the activity key.
      presence.stop();
      // End the session before Logout: Logout revokes the token, and the UNAUTHENTICATED
      // that this brings to calls still open (the users page's stream, a ping) would
      // otherwise read as an expired session.
      store.end('signed-out');
      if (session) await logoutWithRetries(api, session.accessToken, deps.browserId());
    },
  };
}

/** Logout is idempotent, so a transient failure is worth a few quick retries. */
const LOGOUT_ATTEMPTS = 3;
const LOGOUT_RETRY_POLICY = { baseMs: 500, maxMs: 2_000 };

/** Logout with the ended session's token, which the store no longer holds. */
async function logoutWithRetries(api: Api, accessToken: string, browserId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      // The browser id lets the server keep the user online while another browser of theirs pings.
      await api.activity.logout({ browserId }, { headers: { authorization: `Bearer ${accessToken}` } });
      return;
    } catch (error) {
      // Signing out locally must not hang on the network: after the last attempt the
      // session ends anyway, and the server-side status follows once the threshold passes.
      if (!isTransientFailure(error) || attempt === LOGOUT_ATTEMPTS) return;
      await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, LOGOUT_RETRY_POLICY, Math.random)));
    }
  }
}

/** What the pings say of input, following the delay the server tells (0: detection off). */
interface IdleDetection {
  /** The ping's `idle` field: undefined while detection is off, so nothing is sent. */
  report(): boolean | undefined;
  follow(idleAfterMinutes: number): void;
  onReturn(listener: () => void): void;
  stop(): void;
}

function idleDetection(target: EventTarget): IdleDetection {
  const input = createInputActivity(target);
  let delayMs = 0;
  let reportedIdle = false;
  let onReturn = () => {};
  input.onInput(() => {
    if (!reportedIdle) return;
    reportedIdle = false;
    onReturn();
  });
  return {
    report() {
      if (delayMs === 0) return undefined;
      reportedIdle = input.idleFor(delayMs);
      return reportedIdle;
    },
    follow(idleAfterMinutes) {
      delayMs = idleAfterMinutes * 60_000;
      if (delayMs > 0) input.start();
      else {
        input.stop();
        reportedIdle = false;
      }
    },
    onReturn(listener) {
      onReturn = listener;
    },
    stop() {
      input.stop();
    },
  };
}

/** Runs a pinger while the store holds a session, one per session. */
function keepPresence(store: SessionStore, api: Api, deps: ServiceDeps): { stop(): void } {
  let current: { session: Session; pinger: Pinger; idle: IdleDetection } | null = null;

  const stop = () => {
    current?.pinger.stop();
    current?.idle.stop();
    current = null;
  };

  const follow = () => {
    const { session } = store.getState();
    if (session === current?.session) return;
    stop();
    if (!session) return;
    const idle = idleDetection(deps.inputEvents());
    const pinger = createPinger({
      ping: async () => {
        const answer = await api.activity.ping({ browserId: deps.browserId(), idle: idle.report() });
        idle.follow(answer.idleAfterMinutes);
        return answer;
      },
      visibility: deps.visibility(),
      // One pinging tab per user: two users signed in in two tabs both keep their status.
      election: deps.election(`presence-pinger:${session.userId}`),
      onUnauthenticated: () => {
        store.end('expired');
      },
    });
    // Back from idle: say so at once rather than at the next interval.
    idle.onReturn(() => { pinger.pingSoon(); });
    current = { session, pinger, idle };
    pinger.start();
  };

  store.subscribe(follow);
  follow();
  return { stop };
}
