/**
 * This browser's id: random, made once and kept in localStorage, so every tab of the
 * browser sends the same one and the server counts the user's browsers (« 2 navigateurs »).
 * It says nothing about the person or the machine; clearing the site's data makes a new one.
 */

/** The localStorage key; the value is 22 characters of base64url (128 random bits). */
export const BROWSER_ID_KEY = 'presence.browser-id';
const WELL_FORMED = /^[A-Za-z0-9_-]{16,64}$/;

/** The stored id, or a new one stored for the next tabs; a fresh one per call if storage fails. */
export function browserId(storage: Pick<Storage, 'getItem' | 'setItem'> | undefined, random: (bytes: Uint8Array) => void): string {
  try {
    const stored = storage?.getItem(BROWSER_ID_KEY);
    if (stored && WELL_FORMED.test(stored)) return stored;
  } catch {
    // Storage refused (privacy settings): fall through to a fresh id.
  }
  const id = newBrowserId(random);
  try {
    storage?.setItem(BROWSER_ID_KEY, id);
  } catch {
    // Not kept: this tab then counts as its own browser, which is only a count.
  }
  return id;
}

export function newBrowserId(random: (bytes: Uint8Array) => void): string {
  const bytes = new Uint8Array(16);
  random(bytes);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
