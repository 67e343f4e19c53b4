/**
 * Account names: what a valid name is and when two names are the same person.
 *
 * Names are compared after NFKC normalisation and lower-casing, so `Bob`, `BOB` and `Ｂｏｂ` (full-width) are one
 * account and cannot impersonate each other. Letters of any script, combining marks (needed by e.g. Devanagari),
 * decimal digits and `._-` are allowed; a name must start with a letter or digit.
 */
import { Limits } from './protocol.ts';

const NAME_RE = /^[\p{L}\p{Nd}][\p{L}\p{M}\p{Nd}._-]*$/u;

/** The display form: NFKC-normalised, as the user typed it otherwise. Null when invalid. */
export function normalizeName(raw: unknown): string | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > Limits.maxNameChars * 4) return null;
  const name = raw.normalize('NFKC');
  const chars = [...name].length;
  if (chars < 1 || chars > Limits.maxNameChars) return null;
  return NAME_RE.test(name) ? name : null;
}

/** The identity key: two names with the same key are the same account. Input must be normalised. */
export function nameKey(normalized: string): string {
  return normalized.toLowerCase().normalize('NFKC');
}
