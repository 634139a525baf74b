/**
 * What to tell a person when a call fails, in French, chosen by gRPC status code.
 *
 * Network failures surface from connect-web as Unknown (the fetch itself failed) or as
 * Unavailable (the gateway answered 502/503), so both read as "service unavailable".
 */
import { Code, ConnectError } from '@connectrpc/connect';

export const SESSION_EXPIRED_MESSAGE = 'Votre session a expiré, veuillez vous reconnecter.';
export const SERVICE_UNAVAILABLE_MESSAGE = 'Le service est indisponible pour le moment. Veuillez réessayer plus tard.';
export const ADMIN_ONLY_MESSAGE = 'Cette page est réservée aux administrateurs.';

export function errorCode(error: unknown): Code {
  return ConnectError.from(error).code;
}

function isUnreachable(code: Code): boolean {
  return [Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Unimplemented].includes(code);
}

/** A failure that may well not happen again: the network or the service was briefly down. */
export function isTransientFailure(error: unknown): boolean {
  return [Code.Unavailable, Code.Unknown, Code.DeadlineExceeded].includes(errorCode(error));
}

/** The message for a failed sign-in. */
export function loginErrorMessage(error: unknown): string {
  const code = errorCode(error);
  switch (code) {
    case Code.Unauthenticated:
      return "Nom d'utilisateur ou mot de passe incorrect.";
    case Code.ResourceExhausted:
      return 'Trop de tentatives de connexion. Veuillez patienter quelques minutes avant de réessayer.';
    case Code.InvalidArgument:
      return "Veuillez saisir un nom d'utilisateur (64 caractères au plus) et un mot de passe.";
    default:
      return isUnreachable(code) ? SERVICE_UNAVAILABLE_MESSAGE : 'La connexion a échoué. Veuillez réessayer.';
  }
}

/** The message for any other failed call, shown next to what the person was doing. */
export function requestErrorMessage(error: unknown): string {
  const connectError = ConnectError.from(error);
  switch (connectError.code) {
    case Code.Unauthenticated:
      return SESSION_EXPIRED_MESSAGE;
    case Code.PermissionDenied:
      return ADMIN_ONLY_MESSAGE;
    case Code.InvalidArgument:
      // The server's messages for invalid input are written for people (docs/design.md, Errors).
      return `Valeur refusée par le serveur : ${connectError.rawMessage}`;
    case Code.ResourceExhausted:
      return 'Trop de requêtes. Veuillez patienter un instant avant de réessayer.';
    default:
      return isUnreachable(connectError.code) ? SERVICE_UNAVAILABLE_MESSAGE : 'Une erreur inattendue est survenue.';
  }
}
