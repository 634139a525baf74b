/**
 * The gRPC-Web clients of both services, sharing one transport whose interceptor sends
 * the session's token and ends the session when the server refuses it.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { ActivityService } from './gen/presence/activity/v1/activity_pb';
import { AdminService } from './gen/presence/admin/v1/admin_pb';
import type { Session, SessionStore } from './session';

export interface Api {
  activity: Client<typeof ActivityService>;
  admin: Client<typeof AdminService>;
}

export function createApi(baseUrl: string, store: SessionStore): Api {
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [sessionInterceptor(store)] });
  return {
    activity: createClient(ActivityService, transport),
    admin: createClient(AdminService, transport),
  };
}

/**
 * Adds `authorization: Bearer <token>` to every call but Login (sign-out's Logout, made
 * once the session has ended, brings its own), and turns an
 * UNAUTHENTICATED answer into the end of the session ("expired"), whichever call got it,
 * including a stream that fails midway.
 */
export function sessionInterceptor(store: SessionStore): Interceptor {
  return (next) => async (request) => {
    // Login's UNAUTHENTICATED means wrong credentials, and Logout's means "already signed
    // out": neither is an expired session.
    const method = request.method.name;
    const session = method === 'Login' ? null : store.getState().session;
    if (session) request.header.set('authorization', `Bearer ${session.accessToken}`);

    const endIfRefused = (error: unknown) => {
      if (session && method !== 'Logout') endSessionIfRefused(store, session, error);
    };
    try {
      const response = await next(request);
      if (!response.stream) return response;
      return { ...response, message: rethrowing(response.message, endIfRefused) };
    } catch (error) {
      endIfRefused(error);
      throw error;
    }
  };
}

function endSessionIfRefused(store: SessionStore, session: Session, error: unknown) {
  // Only the session that made the call: a late answer must not end a newer session.
  if (ConnectError.from(error).code === Code.Unauthenticated && store.getState().session === session) {
    store.end('expired');
  }
}

async function* rethrowing<T>(messages: AsyncIterable<T>, onError: (error: unknown) => void): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    onError(error);
    throw error;
  }
}
