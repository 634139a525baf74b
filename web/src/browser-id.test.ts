import { describe, expect, it } from 'vitest';
import { BROWSER_ID_KEY, browserId, newBrowserId } from './browser-id';

function memoryStorage(initial: Record<string, string> = {}) {
  const values = new Map(Object.entries(initial));
  return {
    getItem: (key: string) => values.get(key) ?? null,
    setItem: (key: string, value: string) => void values.set(key, value),
    values,
  };
}

const cryptoRandom = (bytes: Uint8Array) => void crypto.getRandomValues(bytes);

describe('browserId', () => {
  it('is made once and then shared by every tab of the browser', () => {
    const storage = memoryStorage();
    const first = browserId(storage, cryptoRandom);
    expect(first).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(storage.values.get(BROWSER_ID_KEY)).toBe(first);
    expect(browserId(storage, cryptoRandom)).toBe(first);
  });

  it('differs between browsers', () => {
    expect(browserId(memoryStorage(), cryptoRandom)).not.toBe(browserId(memoryStorage(), cryptoRandom));
  });

  it('replaces a stored value the server would refuse', () => {
    const storage = memoryStorage({ [BROWSER_ID_KEY]: 'not an id!' });
    const id = browserId(storage, cryptoRandom);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(storage.values.get(BROWSER_ID_KEY)).toBe(id);
  });

  it('still gives an id when storage throws', () => {
    const refusing = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
    };
    expect(browserId(refusing, cryptoRandom)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('encodes 128 bits as url-safe base64 without padding', () => {
    expect(newBrowserId((bytes) => bytes.fill(0xff))).toBe('_____________________w');
  });
});
