// @vitest-environment jsdom
import { Code } from '@connectrpc/connect';
import { cleanup, renderHook, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { StatusFilter } from '../gen/presence/admin/v1/admin_pb';
import { SessionStore } from '../session';
import { FakePresenceServer, someUsers } from '../testing/fake-server';
import { memoryStorage } from '../testing/fakes';
import { PAGE_SIZE, useStatusPage } from './use-status-page';

afterEach(cleanup);

/** The hook over a fake server, signed in as admintest1; the stream opens at once. */
function watchPage(server: FakePresenceServer, filter = StatusFilter.ALL, pageToken = '') {
  const store = new SessionStore(memoryStorage());
  store.begin({
    accessToken: server.tokenFor('admintest1'),
    userId: 'admin-1',
    role: 'admin',
    displayName: 'Admin Test 1',
    expiresAtMs: Date.now() + 3_600_000,
  });
  const api = server.api(store);
  const hook = renderHook(({ filter, query, pageToken }) => useStatusPage(api, filter, query, pageToken), {
    initialProps: { filter, query: '', pageToken },
  });
  return { ...hook, store };
}

const online = (result: { current: ReturnType<typeof useStatusPage> }, username: string) =>
  result.current.page?.statuses.find((status) => status.username === username)?.online;

describe('useStatusPage', () => {
  it('shows the first page and goes live on the snapshot', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const { result } = watchPage(server);

    await waitFor(() => {
      expect(result.current.stream).toBe('live');
      expect(result.current.loading).toBe(false);
    });
    expect(result.current.page?.statuses.map((status) => status.username)).toEqual([
      'admintest1',
      'user1',
      'user2',
      'user3',
    ]);
    expect(result.current.page?.onlineCount).toBe(1n);
    expect(result.current.error).toBe('');
  });

  it('applies a live event to its row at once, then refetches the counts', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const { result } = watchPage(server);
    await waitFor(() => {
      expect(result.current.stream).toBe('live');
      expect(result.current.loading).toBe(false);
    });
    const listedBefore = server.listRequests.length;
    // No page can arrive now: the row can only change through the event itself.
    const releaseLists = server.holdLists();

    server.setOnline('user2', true);
    await waitFor(() => {
      expect(online(result, 'user2')).toBe(true);
    });
    expect(result.current.page?.onlineCount).toBe(1n);
    // The counts come from the server: the event asks for the page again.
    await waitFor(() => {
      expect(server.listRequests.length).toBe(listedBefore + 1);
    });
    releaseLists();
    await waitFor(() => {
      expect(result.current.page?.onlineCount).toBe(2n);
    });
  });

  it('follows a threshold change: resync, fresh snapshot, page fetched again', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const { result } = watchPage(server);
    await waitFor(() => {
      expect(result.current.page?.thresholdMinutes).toBe(5);
    });

    server.setThreshold(30, { user1: true, user3: true });
    await waitFor(() => {
      expect(result.current.page?.thresholdMinutes).toBe(30);
    });
    expect(result.current.page?.onlineCount).toBe(3n);
    expect(online(result, 'user1')).toBe(true);
    expect(online(result, 'user2')).toBe(false);
  });

  it('reconnects after UNAVAILABLE and catches up on what changed meanwhile', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const { result } = watchPage(server);
    await waitFor(() => {
      expect(result.current.stream).toBe('live');
    });

    // New streams are refused too until the test lets them through, so the
    // reconnecting state lasts long enough to be seen.
    server.refuseWatchWith = Code.Unavailable;
    server.failStreams(Code.Unavailable);
    await waitFor(() => {
      expect(result.current.stream).toBe('reconnecting');
    });
    // Changed while no stream was open: only the new stream's snapshot can tell.
    server.users[2].online = true;
    const attemptsWhileDown = server.watchCount;
    server.refuseWatchWith = null;
    await waitFor(
      () => {
        expect(result.current.stream).toBe('live');
        expect(online(result, 'user2')).toBe(true);
      },
      { timeout: 10_000 },
    );
    expect(server.watchCount).toBeGreaterThan(attemptsWhileDown);
  });

  it('stops on UNAUTHENTICATED: the session is over, no reconnection', async () => {
    const server = new FakePresenceServer(someUsers(3));
    const { result, store } = watchPage(server);
    await waitFor(() => {
      expect(result.current.stream).toBe('live');
    });

    server.refuseWatchWith = Code.Unauthenticated;
    server.failStreams(Code.Unauthenticated);
    await waitFor(() => {
      expect(result.current.stream).toBe('refused');
    });
    // 'refused' is final: a reconnection would have shown 'reconnecting' instead.
    expect(store.getState().ended).toBe('expired');
    expect(server.watchCount).toBe(1);
  });

  it('pages and filters, keeping one stream, and keeps the old page on screen while loading', async () => {
    const server = new FakePresenceServer(someUsers(PAGE_SIZE + 10));
    const { result, rerender } = watchPage(server);
    await waitFor(() => {
      expect(result.current.page?.statuses).toHaveLength(PAGE_SIZE);
    });
    const next = result.current.page?.nextPageToken ?? '';
    expect(next).not.toBe('');

    rerender({ filter: StatusFilter.ALL, query: '', pageToken: next });
    expect(result.current.loading).toBe(true);
    expect(result.current.page?.statuses).toHaveLength(PAGE_SIZE);
    await waitFor(() => {
      expect(result.current.loading).toBe(false);
    });
    expect(result.current.page?.statuses).toHaveLength(11);
    expect(result.current.page?.statuses[0]?.username).toBe(`user${PAGE_SIZE}`);

    rerender({ filter: StatusFilter.ONLINE, query: '', pageToken: '' });
    await waitFor(() => {
      expect(result.current.loading).toBe(false);
    });
    expect(result.current.page?.statuses.map((status) => status.username)).toEqual(['admintest1']);

    // On a filtered page, a user going online joins it once the page is fetched again.
    server.setOnline('user7', true);
    await waitFor(() => {
      expect(result.current.page?.statuses.map((status) => status.username)).toEqual(['admintest1', 'user7']);
    });
    expect(server.listRequests.at(-1)).toMatchObject({ filter: StatusFilter.ONLINE, pageToken: '', pageSize: PAGE_SIZE });
    expect(server.watchCount).toBe(1);
  });
});
