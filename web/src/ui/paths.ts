/** The app's routes, spelled once. */
import { isAdmin, type Session } from '../session';

export const paths = {
  login: '/login',
  home: '/',
  myPresence: '/my-records',
  adminUsers: '/admin/users',
  adminSettings: '/admin/settings',
  adminUser: (userId: string) => `/admin/users/${encodeURIComponent(userId)}`,
} as const;

/** Where a freshly signed-in user lands. */
export function landingPath(session: Session): string {
  return isAdmin(session) ? paths.adminUsers : paths.home;
}

/** Passed to the sign-in page so it can send the user back where they were. */
export interface ReturnTo {
  from?: string;
}

/** Passed to a user's page so its back link returns to the list as it was (page, search). */
export interface BackTo {
  list?: string;
}
