import { describe, expect, it } from 'vitest';
import { parseThreshold } from './threshold';

describe('parseThreshold', () => {
  it('accepts whole minutes from 1 to 1440', () => {
    expect(parseThreshold('1')).toEqual({ ok: true, minutes: 1 });
    expect(parseThreshold(' 15 ')).toEqual({ ok: true, minutes: 15 });
    expect(parseThreshold('1440')).toEqual({ ok: true, minutes: 1440 });
  });

  it('refuses an empty field', () => {
    expect(parseThreshold('  ')).toEqual({ ok: false, message: 'Veuillez saisir un nombre de minutes.' });
  });

  it('refuses what is not a whole number', () => {
    for (const input of ['1.5', '-3', '1e3', 'abc', '15 min']) {
      expect(parseThreshold(input)).toEqual({
        ok: false,
        message: 'Le seuil doit être un nombre entier de minutes.',
      });
    }
  });

  it('refuses values out of range', () => {
    const outOfRange = { ok: false, message: 'Le seuil doit être compris entre 1 et 1440 minutes.' };
    expect(parseThreshold('0')).toEqual(outOfRange);
    expect(parseThreshold('1441')).toEqual(outOfRange);
    expect(parseThreshold('99999999999999999999')).toEqual(outOfRange);
  });
});
