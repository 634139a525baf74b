/**
 * Where the services are: the origin the app is served from, because the gateway serves
 * both the app and gRPC-Web. `VITE_PRESENCE_API_URL` points a build elsewhere if needed.
 */
export function apiBaseUrl(): string {
  const configured: unknown = import.meta.env.VITE_PRESENCE_API_URL;
  return typeof configured === 'string' && configured !== '' ? configured : window.location.origin;
}
