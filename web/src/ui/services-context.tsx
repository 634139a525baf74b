/**
 * Hands the app's services (see services.ts) to React components, and exposes the
 * session as React state.
 */
import { createContext, useContext, useEffect, useSyncExternalStore, type ReactNode } from 'react';
import type { AppServices } from '../services';
import type { SessionState } from '../session';

const ServicesContext = createContext<AppServices | null>(null);

export function ServicesProvider({ services, children }: { services: AppServices; children: ReactNode }) {
  return <ServicesContext value={services}>{children}</ServicesContext>;
}

export function useServices(): AppServices {
  const services = useContext(ServicesContext);
  if (!services) throw new Error('useServices needs a ServicesProvider above it.');
  return services;
}

export function useSessionState(): SessionState {
  const { store } = useServices();
  return useSyncExternalStore(store.subscribe, store.getState);
}

/** Sets the document title, which screen readers announce on navigation. */
export function usePageTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} — Presence`;
  }, [title]);
}
