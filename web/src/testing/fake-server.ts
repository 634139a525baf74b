/**
 * An in-memory presence server for component and hook tests, reached through the real
 * Connect-ES clients over `createRouterTransport` (no network, same encoding, same
 * interceptors as the app). It keeps users and their statuses, serves pages of them like
 * ListUserStatuses, and streams WatchUserStatuses like the admin service: a snapshot, its
 * completion, then one event per change; a resync, a fresh snapshot and its completion
 * when the threshold changes; and UNAUTHENTICATED to the streams of a signed-out token.
 */
import { timestampFromMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, createRouterTransport, type HandlerContext } from '@connectrpc/connect';
import { sessionInterceptor, type Api } from '../api';
import { ActivityService, type MyPresence } from '../gen/presence/activity/v1/activity_pb';
import {
  AdminService,
  PresenceState,
  StatusFilter,
  StatusSource,
  type GetOnlineHistoryRequest,
  type ListUserStatusesRequest,
  type LoginEvent,
  type UserPresence,
  type UserStatus,
  type UserStatusEvent,
} from '../gen/presence/admin/v1/admin_pb';
import { soloElection } from '../leader-election';
import { createAppServices, type AppServices } from '../services';
import type { SessionStore } from '../session';
import { FakeVisibility, memoryStorage } from './fakes';

export interface FakeUser {
  userId: string;
  username: string;
  displayName: string;
  role: 'user' | 'admin';
  online: boolean;
  /** The last ping, when there was one (also the user's last seen). */
  lastActivityMs?: number;
  /** Browsers keeping the user online (0 when unset). */
  activeBrowsers?: number;
  /** Online but every browser idle (idle detection on). */
  away?: boolean;
}

/** The app's services over `server`, with the fakes a page test needs (one visible tab, pinging). */
export function servicesOver(server: FakePresenceServer): AppServices {
  return createAppServices({
    storage: memoryStorage(),
    createApi: (store) => server.api(store),
    visibility: () => new FakeVisibility(true),
    election: () => soloElection(),
    browserId: () => 'browser-of-the-test-1',
    inputEvents: () => new EventTarget(),
  });
}

/** The event shapes the stream sends, as plain objects (the client builds the messages). */
type EventInit = Partial<Omit<UserStatusEvent, '$typeName' | 'status'>> & { status?: ReturnType<typeof statusOf> };

const PASSWORD = 'Test1234!';

function statusOf(user: FakeUser) {
  return {
    userId: user.userId,
    username: user.username,
    displayName: user.displayName,
    online: user.online,
    source: StatusSource.ACTIVITY,
    lastActivityAt: user.lastActivityMs === undefined ? undefined : timestampFromMs(user.lastActivityMs),
    lastSeenAt: user.lastActivityMs === undefined ? undefined : timestampFromMs(user.lastActivityMs),
    activeBrowsers: user.online ? (user.activeBrowsers ?? 0) : 0,
    state: !user.online ? PresenceState.OFFLINE : user.away ? PresenceState.AWAY : PresenceState.ONLINE,
  };
}

/** What GetUserPresence returns besides the status, as plain objects. */
export type PresenceInit = Partial<Omit<UserPresence, '$typeName' | 'status' | 'recentEvents'>> & {
  status?: Partial<Omit<UserStatus, '$typeName'>>;
  recentEvents?: Partial<Omit<LoginEvent, '$typeName'>>[];
};

/** What GetMyPresence returns for a user, as plain objects. */
export type MyPresenceInit = Partial<Omit<MyPresence, '$typeName' | 'browsers' | 'recentEvents' | 'retention'>> & {
  browsers?: Partial<Omit<MyPresence['browsers'][number], '$typeName'>>[];
  recentEvents?: Partial<Omit<MyPresence['recentEvents'][number], '$typeName'>>[];
  retention?: { activitySeconds: number; thresholdMinutes: number; loginHistoryDays: number };
};

/** One open WatchUserStatuses stream: a queue of events, or the error that ends it. */
class OpenStream {
  private queue: EventInit[] = [];
  private failure: ConnectError | null = null;
  private wake: (() => void) | null = null;

  constructor(readonly token: string) {}

  push(event: EventInit): void {
    this.queue.push(event);
    this.wake?.();
  }

  fail(error: ConnectError): void {
    this.failure = error;
    this.wake?.();
  }

  async *events(signal: AbortSignal): AsyncGenerator<EventInit> {
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.failure) throw this.failure;
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = null;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

export class FakePresenceServer {
  readonly users: FakeUser[];
  thresholdMinutes = 5;
  /** Every ListUserStatuses request, in order. */
  readonly listRequests: ListUserStatusesRequest[] = [];
  /** Every GetOnlineHistory request, in order, and what it returns. */
  readonly historyRequests: GetOnlineHistoryRequest[] = [];
  historyPoints: { at: Timestamp; maxOnline: bigint; meanOnline: number; samples: number }[] = [];
  historyStepSeconds = 60;
  /** GetUserPresence's answer for a user id, over what their FakeUser says. */
  readonly presences = new Map<string, PresenceInit>();
  /** The user ids GetUserPresence was asked for, in order. */
  readonly presenceRequests: string[] = [];
  /** GetMyPresence's answer for a user id: only ever the caller's, as the service does. */
  readonly myPresences = new Map<string, MyPresenceInit>();
  /** The user ids GetMyPresence answered for (the callers'), in order. */
  readonly myPresenceCallers: string[] = [];
  /** How many WatchUserStatuses streams were opened. */
  watchCount = 0;
  /** When set, new streams are refused with this code before any event. */
  refuseWatchWith: Code | null = null;
  private listsHeld: Promise<void> | null = null;
  private readonly tokens = new Map<string, FakeUser>();
  private readonly streams = new Set<OpenStream>();
  private nextToken = 1;

  constructor(users: FakeUser[]) {
    this.users = users;
  }

  /** The clients of both services, as the app builds them, over this server. */
  api(store: SessionStore): Api {
    const transport = createRouterTransport(
      (router) => {
        router.service(ActivityService, {
          login: (request) => {
            const user = this.users.find((candidate) => candidate.username === request.username);
            if (!user || request.password !== PASSWORD) throw new ConnectError('wrong credentials', Code.Unauthenticated);
            const accessToken = `token-${this.nextToken++}`;
            this.tokens.set(accessToken, user);
            return {
              accessToken,
              userId: user.userId,
              role: user.role,
              displayName: user.displayName,
              expiresAt: timestampFromMs(Date.now() + 3_600_000),
            };
          },
          ping: (_request, context) => {
            this.caller(context);
            return { pingIntervalSeconds: 60 };
          },
          logout: async (_request, context) => {
            this.revoke(this.caller(context));
            // The revocation ends the token's streams before Logout's own answer reaches
            // the browser (as it may through the gateway): let those errors land first.
            await new Promise((resolve) => setTimeout(resolve, 0));
            return {};
          },
          getMyPresence: (_request, context) => {
            const user = this.tokens.get(this.caller(context));
            if (!user) throw new ConnectError('the access token was revoked', Code.Unauthenticated);
            this.myPresenceCallers.push(user.userId);
            return {
              userId: user.userId,
              generatedAt: timestampFromMs(Date.now()),
              retention: { activitySeconds: 2 * 60 * this.thresholdMinutes, thresholdMinutes: this.thresholdMinutes, loginHistoryDays: 365 },
              ...this.myPresences.get(user.userId),
            };
          },
        });
        router.service(AdminService, {
          listUserStatuses: async (request, context) => {
            this.caller(context);
            this.listRequests.push(request);
            await this.listsHeld;
            return this.page(request);
          },
          watchUserStatuses: (_request, context) => this.watch(context),
          getUserPresence: (request, context) => {
            this.caller(context);
            this.presenceRequests.push(request.userId);
            const user = this.users.find((candidate) => candidate.userId === request.userId);
            if (!user) throw new ConnectError('no such user', Code.NotFound);
            const extra = this.presences.get(user.userId) ?? {};
            return {
              thresholdMinutes: this.thresholdMinutes,
              generatedAt: timestampFromMs(Date.now()),
              ...extra,
              status: { ...statusOf(user), ...extra.status },
            };
          },
          getOnlineHistory: (request, context) => {
            this.caller(context);
            this.historyRequests.push(request);
            return {
              points: this.historyPoints,
              stepSeconds: this.historyStepSeconds,
              from: request.from,
              to: request.to,
            };
          },
        });
      },
      { transport: { interceptors: [sessionInterceptor(store)] } },
    );
    return { activity: createClient(ActivityService, transport), admin: createClient(AdminService, transport) };
  }

  /** A token for `username` without going through Login (for hook tests). */
  tokenFor(username: string): string {
    const user = this.users.find((candidate) => candidate.username === username);
    if (!user) throw new Error(`no user ${username}`);
    const accessToken = `token-${this.nextToken++}`;
    this.tokens.set(accessToken, user);
    return accessToken;
  }

  /** ListUserStatuses answers nothing until the returned function is called. */
  holdLists(): () => void {
    let release: () => void = () => undefined;
    this.listsHeld = new Promise<void>((resolve) => {
      release = resolve;
    });
    return () => {
      this.listsHeld = null;
      release();
    };
  }

  /** How many tokens still work (signed in and not signed out). */
  liveTokens(): number {
    return this.tokens.size;
  }

  /** Every token of `username` stops working (the account was disabled). */
  revokeTokensOf(username: string): void {
    for (const [token, user] of this.tokens) if (user.username === username) this.revoke(token);
  }

  /** A user's status changes: every open stream is told at once. */
  setOnline(username: string, online: boolean, activeBrowsers = online ? 1 : 0): void {
    const user = this.users.find((candidate) => candidate.username === username);
    if (!user) throw new Error(`no user ${username}`);
    user.online = online;
    user.activeBrowsers = activeBrowsers;
    user.away = false;
    for (const stream of this.streams) stream.push({ status: statusOf(user) });
  }

  /** An online user's browsers all go idle (or one has input again): streams are told. */
  setAway(username: string, away: boolean): void {
    const user = this.users.find((candidate) => candidate.username === username);
    if (!user) throw new Error(`no user ${username}`);
    user.away = away;
    for (const stream of this.streams) stream.push({ status: statusOf(user) });
  }

  /** The threshold changes, and with it who is online: streams resync from a fresh snapshot. */
  setThreshold(minutes: number, online: Record<string, boolean>): void {
    this.thresholdMinutes = minutes;
    for (const user of this.users) user.online = online[user.username] ?? user.online;
    for (const stream of this.streams) {
      stream.push({ resync: true });
      this.sendSnapshot(stream);
    }
  }

  /** Every open stream fails with `code` (UNAVAILABLE: the service went away). */
  failStreams(code: Code): void {
    for (const stream of this.streams) stream.fail(new ConnectError('stream failed', code));
  }

  private revoke(token: string): void {
    this.tokens.delete(token);
    // Like the admin service: a revoked token's streams end, UNAUTHENTICATED.
    for (const stream of this.streams) {
      if (stream.token === token) stream.fail(new ConnectError('the access token was revoked', Code.Unauthenticated));
    }
  }

  private caller(context: HandlerContext): string {
    const token = (context.requestHeader.get('authorization') ?? '').replace(/^Bearer /, '');
    if (!this.tokens.has(token)) throw new ConnectError('the access token was revoked', Code.Unauthenticated);
    return token;
  }

  private async *watch(context: HandlerContext): AsyncGenerator<EventInit> {
    this.watchCount += 1;
    const token = this.caller(context);
    if (this.refuseWatchWith !== null) throw new ConnectError('refused', this.refuseWatchWith);
    const stream = new OpenStream(token);
    this.streams.add(stream);
    this.sendSnapshot(stream);
    try {
      yield* stream.events(context.signal);
    } finally {
      this.streams.delete(stream);
    }
  }

  private sendSnapshot(stream: OpenStream): void {
    for (const user of this.users) stream.push({ status: statusOf(user), snapshot: true });
    stream.push({ snapshotComplete: true });
  }

  /** Pages by offset (the token is the offset as text), filtered, with counts for everyone. */
  private page(request: ListUserStatusesRequest) {
    const matching = this.users.filter(
      (user) =>
        (request.filter === StatusFilter.ALL ||
          request.filter === StatusFilter.UNSPECIFIED ||
          (request.filter === StatusFilter.ONLINE) === user.online) &&
        matchesQuery(request.query, user),
    );
    const offset = Number(request.pageToken || '0');
    const end = offset + request.pageSize;
    const online = this.users.filter((user) => user.online).length;
    const away = this.users.filter((user) => user.online && user.away).length;
    return {
      statuses: matching.slice(offset, end).map(statusOf),
      nextPageToken: end < matching.length ? String(end) : '',
      totalCount: BigInt(this.users.length),
      onlineCount: BigInt(online - away),
      awayCount: BigInt(away),
      offlineCount: BigInt(this.users.length - online),
      thresholdMinutes: this.thresholdMinutes,
      generatedAt: timestampFromMs(Date.now()),
    };
  }
}

/** Like the admin service: every word of the query starts a word of the username or display name, ignoring case and accents. */
function matchesQuery(query: string, user: FakeUser): boolean {
  const fold = (text: string) =>
    text
      .normalize('NFD')
      .replace(/\p{M}/gu, '')
      .toLowerCase();
  const words = fold(`${user.username} ${user.displayName}`).split(/[^\p{L}\p{N}]+/u);
  return fold(query)
    .split(/\s+/)
    .filter(Boolean)
    .every((wanted) => words.some((word) => word.startsWith(wanted)));
}

/** `count` users named user1, user2, ... (offline), and admintest1 (an admin, online). */
export function someUsers(count: number): FakeUser[] {
  const users: FakeUser[] = [
    { userId: 'admin-1', username: 'admintest1', displayName: 'Admin Test 1', role: 'admin', online: true },
  ];
  for (let n = 1; n <= count; n++) {
    users.push({ userId: `user-${n}`, username: `user${n}`, displayName: `User ${n}`, role: 'user', online: false });
  }
  return users;
}

export { PASSWORD as FAKE_PASSWORD };
