import { Code, ConnectError, createClient, createRouterTransport, type HandlerContext } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { sessionInterceptor } from './api';
import { ActivityService } from './gen/presence/activity/v1/activity_pb';
import { AdminService } from './gen/presence/admin/v1/admin_pb';
import { SessionStore, type Session, type SessionStorage } from './session';

function memoryStorage(): SessionStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => items.set(key, value),
    removeItem: (key) => items.delete(key),
  };
}

const session: Session = {
  accessToken: 'good-token',
  userId: 'u1',
  role: 'admin',
  displayName: 'Admin Test',
  expiresAtMs: Number.MAX_SAFE_INTEGER,
};

/** An in-process server that accepts only `good-token` and records the headers it saw. */
function setUp() {
  const seen: (string | null)[] = [];
  const authorize = (context: HandlerContext) => {
    const header = context.requestHeader.get('authorization');
    seen.push(header);
    if (header !== 'Bearer good-token') throw new ConnectError('token refused', Code.Unauthenticated);
  };
  const store = new SessionStore(memoryStorage());
  const transport = createRouterTransport(
    (router) => {
      router.service(ActivityService, {
        login: (_request, context) => {
          seen.push(context.requestHeader.get('authorization'));
          throw new ConnectError('wrong password', Code.Unauthenticated);
        },
        ping: (_request, context) => {
          authorize(context);
          return { pingIntervalSeconds: 60 };
        },
        logout: (_request, context) => {
          authorize(context);
          return {};
        },
      });
      router.service(AdminService, {
        async *watchUserStatuses(_request, context) {
          yield { snapshotComplete: true };
          await Promise.resolve();
          authorize(context);
        },
      });
    },
    { transport: { interceptors: [sessionInterceptor(store)] } },
  );
  return {
    seen,
    store,
    activity: createClient(ActivityService, transport),
    admin: createClient(AdminService, transport),
  };
}

describe('sessionInterceptor', () => {
  it('sends the bearer token of the session', async () => {
    const { seen, store, activity } = setUp();
    store.begin(session);
    await activity.ping({});

    expect(seen).toEqual(['Bearer good-token']);
  });

  it('sends no token with Login, and a refused Login is not an expired session', async () => {
    const { seen, store, activity } = setUp();
    store.begin(session);
    await expect(activity.login({ username: 'a', password: 'b' })).rejects.toThrow('wrong password');

    expect(seen).toEqual([null]);
    expect(store.getState().session).toBe(session);
  });

  it('ends the session as expired when a call is refused', async () => {
    const { store, activity } = setUp();
    store.begin({ ...session, accessToken: 'revoked-token' });
    await expect(activity.ping({})).rejects.toThrow('token refused');

    expect(store.getState()).toEqual({ session: null, ended: 'expired' });
  });

  it('does the same for a stream that fails midway', async () => {
    const { store, admin } = setUp();
    store.begin({ ...session, accessToken: 'revoked-token' });
    const received: unknown[] = [];
    await expect(async () => {
      for await (const event of admin.watchUserStatuses({})) received.push(event);
    }).rejects.toThrow('token refused');

    expect(received).toHaveLength(1);
    expect(store.getState().ended).toBe('expired');
  });

  it('leaves a refused Logout to the sign-out flow', async () => {
    const { store, activity } = setUp();
    store.begin({ ...session, accessToken: 'revoked-token' });
    await expect(activity.logout({})).rejects.toThrow('token refused');

    expect(store.getState().session).not.toBeNull();
  });
});
