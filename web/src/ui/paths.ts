/** The app's routes, spelled once. */
import { isAdmin, type Session } from '../session';

export const paths = {
  login: '/login',
  home: '/',
  adminUsers: '/admin/users',
  adminSettings: '/admin/settings',
} as const;

/** Where a freshly signed-in user lands. */
export function landingPath(session: Session): string {
  return isAdmin(session) ? paths.adminUsers : paths.home;
}

/** Passed to the sign-in page so it can send the user back where they were. */
export interface ReturnTo {
  from?: string;
}
