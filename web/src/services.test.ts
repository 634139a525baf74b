import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Api } from './api';
import { soloElection } from './leader-election';
import { createAppServices } from './services';
import type { SessionStorage } from './session';
import { FakeVisibility } from './testing/fakes';

function memoryStorage(): SessionStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => items.set(key, value),
    removeItem: (key) => items.delete(key),
  };
}

/** Services over a fake ActivityService that logs every call it receives. */
function servicesWithFakeServer(idleAfterMinutes = 0, inputEvents = new EventTarget()) {
  const calls: string[] = [];
  const activity = {
    login: vi.fn(() => {
      calls.push('login');
      return Promise.resolve({
        accessToken: 'jwt',
        userId: 'u1',
        role: 'user',
        displayName: 'User Test',
        expiresAt: timestampFromMs(Date.now() + 3_600_000),
      });
    }),
    ping: vi.fn<
      (request: { browserId: string; idle?: boolean }) => Promise<{ pingIntervalSeconds: number; idleAfterMinutes: number }>
    >(() => {
      calls.push('ping');
      return Promise.resolve({ pingIntervalSeconds: 10, idleAfterMinutes });
    }),
    logout: vi.fn<(request: { browserId: string }) => Promise<object>>(() => {
      calls.push('logout');
      return Promise.resolve({});
    }),
  };
  const services = createAppServices({
    storage: memoryStorage(),
    createApi: () => ({ activity }) as unknown as Api,
    visibility: () => new FakeVisibility(true),
    election: () => soloElection(),
    browserId: () => 'browser-of-the-test-1',
    inputEvents: () => inputEvents,
  });
  return { services, activity, calls };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('app services', () => {
  it('ping at once after sign-in, and never after the Logout of sign-out', async () => {
    const { services, calls } = servicesWithFakeServer();
    await services.signIn('usertest1', 'Test1234!');
    await vi.advanceTimersByTimeAsync(15_000);
    await services.signOut();
    await vi.advanceTimersByTimeAsync(60_000);

    expect(calls).toEqual(['login', 'ping', 'ping', 'logout']);
    expect(services.store.getState()).toEqual({ session: null, ended: 'signed-out' });
  });

  it('send the browser id with every ping and with the Logout', async () => {
    const { services, activity } = servicesWithFakeServer();
    await services.signIn('usertest1', 'Test1234!');
    await vi.advanceTimersByTimeAsync(15_000);
    await services.signOut();

    expect(activity.ping.mock.calls.map(([request]) => request)).toEqual([
      { browserId: 'browser-of-the-test-1' },
      { browserId: 'browser-of-the-test-1' },
    ]);
    expect(activity.logout.mock.calls[0][0]).toEqual({ browserId: 'browser-of-the-test-1' });
  });

  it('send no idle field while idle detection is off, whatever the input', async () => {
    const { services, activity } = servicesWithFakeServer(0);
    await services.signIn('usertest1', 'Test1234!');
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(activity.ping.mock.calls.length).toBeGreaterThan(10);
    expect(activity.ping.mock.calls.every(([request]) => !('idle' in request) || request.idle === undefined)).toBe(true);
  });

  it('with idle detection on, say idle after the delay without input, and ping at once when input returns', async () => {
    const input = new EventTarget();
    const { services, activity } = servicesWithFakeServer(1, input);
    await services.signIn('usertest1', 'Test1234!');
    await vi.advanceTimersByTimeAsync(20_000);
    // The first ping learnt that detection is on; input within the delay is not idle.
    expect(activity.ping.mock.calls.at(-1)?.[0].idle).toBe(false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(activity.ping.mock.calls.at(-1)?.[0].idle).toBe(true);

    const before = activity.ping.mock.calls.length;
    input.dispatchEvent(new Event('keydown'));
    await vi.advanceTimersByTimeAsync(0);
    expect(activity.ping.mock.calls.length).toBe(before + 1);
    expect(activity.ping.mock.calls.at(-1)?.[0].idle).toBe(false);
  });

  it('retry a Logout that met an outage, and end the session even if it never succeeds', async () => {
    const { services, activity } = servicesWithFakeServer();
    activity.logout.mockImplementation(() => Promise.reject(new ConnectError('down', Code.Unavailable)));
    await services.signIn('usertest1', 'Test1234!');
    const signingOut = services.signOut();
    await vi.advanceTimersByTimeAsync(10_000);
    await signingOut;

    expect(activity.logout).toHaveBeenCalledTimes(3);
    expect(services.store.getState().ended).toBe('signed-out');
  });

  it('end the session as expired when a ping is refused', async () => {
    const { services, activity } = servicesWithFakeServer();
    await services.signIn('usertest1', 'Test1234!');
    activity.ping.mockImplementation(() => Promise.reject(new ConnectError('revoked', Code.Unauthenticated)));
    await vi.advanceTimersByTimeAsync(10_000);

    expect(services.store.getState()).toEqual({ session: null, ended: 'expired' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(activity.ping).toHaveBeenCalledTimes(2);
  });
});
