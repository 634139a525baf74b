/**
 * The "online" threshold as typed by an admin: parsed once, with a French message a
 * person can act on, before anything is sent (the server checks again).
 */

export const THRESHOLD_MIN_MINUTES = 1;
export const THRESHOLD_MAX_MINUTES = 1440;

export type ThresholdInput = { ok: true; minutes: number } | { ok: false; message: string };

export function parseThreshold(input: string): ThresholdInput {
  const text = input.trim();
  if (text === '') return { ok: false, message: 'Veuillez saisir un nombre de minutes.' };
  if (!/^\d+$/.test(text)) return { ok: false, message: 'Le seuil doit être un nombre entier de minutes.' };
  const minutes = Number(text);
  if (minutes < THRESHOLD_MIN_MINUTES || minutes > THRESHOLD_MAX_MINUTES) {
    return {
      ok: false,
      message: `Le seuil doit être compris entre ${THRESHOLD_MIN_MINUTES} et ${THRESHOLD_MAX_MINUTES} minutes.`,
    };
  }
  return { ok: true, minutes };
}
