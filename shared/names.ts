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

/**
 * Scripts a letter may belong to, for the mixed-script rule. Script_Extensions, so a character shared by
 * several scripts (e.g. the Japanese prolonged sound mark) counts for each of them.
 */
const SCRIPTS = [
  'Latin', 'Greek', 'Cyrillic', 'Armenian', 'Georgian', 'Hebrew', 'Arabic', 'Syriac', 'Thaana', 'Devanagari',
  'Bengali', 'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada', 'Malayalam', 'Sinhala', 'Thai', 'Lao',
  'Tibetan', 'Myanmar', 'Khmer', 'Mongolian', 'Ethiopic', 'Cherokee', 'Han', 'Hiragana', 'Katakana', 'Hangul',
  'Bopomofo',
].map((name) => [name, new RegExp(`\\p{Script_Extensions=${name}}`, 'u')] as const);

/** The mixes TS #39 allows at its "highly restrictive" level besides a single script: Latin with East Asian scripts. */
const ALLOWED_MIXES = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];

/** Scripts whose accented letters Unicode encodes precomposed: a combining mark left on them after NFKC is decoration. */
const PRECOMPOSED = /[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]/u;
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;

/**
 * Why a (normalised, otherwise valid) name would impersonate another by looks, or null when it does not.
 * Unicode TS #39 checks that need no data: invisible (default-ignorable) characters, a confusable mix of
 * scripts, and combining marks that decorate letters of scripts that have no need of them. The other half,
 * a skeleton equal to an existing account's, needs the confusables table and the store (server side).
 */
export function confusableReason(name: string): string | null {
  const chars = [...name];
  const invisible = chars.find((c) => INVISIBLE.test(c));
  if (invisible !== undefined) return `contains an invisible character (U+${hex(invisible)})`;
  const scripts = new Set<string>();
  for (const c of chars) {
    if (!/\p{L}/u.test(c)) continue;
    const own = SCRIPTS.filter(([, re]) => re.test(c)).map(([n]) => n);
    if (own.length === 0) scripts.add(`U+${hex(c)}`);
    // A character of several scripts (Script_Extensions) fits a mix if any of them does; take the first known.
    else if (!own.some((n) => scripts.has(n))) scripts.add(own[0]!);
  }
  if (scripts.size > 1 && !ALLOWED_MIXES.some((mix) => [...scripts].every((sc) => mix.has(sc)))) {
    return `mixes scripts that look alike (${[...scripts].join(', ')})`;
  }
  for (let i = 1; i < chars.length; i++) {
    if (/\p{Mn}/u.test(chars[i]!) && PRECOMPOSED.test(chars[i - 1]!)) {
      return `puts a combining mark (U+${hex(chars[i]!)}) on the letter ${chars[i - 1]}`;
    }
  }
  return null;
}

function hex(c: string): string {
  return c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
}

