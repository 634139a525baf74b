import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { loginErrorMessage, requestErrorMessage, SERVICE_UNAVAILABLE_MESSAGE, SESSION_EXPIRED_MESSAGE } from './errors';

describe('loginErrorMessage', () => {
  it('tells wrong credentials, throttling and outages apart', () => {
    expect(loginErrorMessage(new ConnectError('x', Code.Unauthenticated))).toBe(
      "Nom d'utilisateur ou mot de passe incorrect.",
    );
    expect(loginErrorMessage(new ConnectError('x', Code.ResourceExhausted))).toMatch(/^Trop de tentatives/);
    expect(loginErrorMessage(new ConnectError('x', Code.Unavailable))).toBe(SERVICE_UNAVAILABLE_MESSAGE);
    expect(loginErrorMessage(new TypeError('Failed to fetch'))).toBe(SERVICE_UNAVAILABLE_MESSAGE);
  });
});

describe('requestErrorMessage', () => {
  it("shows the server's explanation of invalid input", () => {
    expect(requestErrorMessage(new ConnectError('threshold must be 1 to 1440', Code.InvalidArgument))).toBe(
      'Valeur refusée par le serveur : threshold must be 1 to 1440',
    );
  });

  it('explains refusals and expiry', () => {
    expect(requestErrorMessage(new ConnectError('x', Code.PermissionDenied))).toBe(
      'Cette page est réservée aux administrateurs.',
    );
    expect(requestErrorMessage(new ConnectError('x', Code.Unauthenticated))).toBe(SESSION_EXPIRED_MESSAGE);
  });
});
