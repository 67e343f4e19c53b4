/**
 * Which language the page speaks: the person's own choice (kept in localStorage) if any, else the first of the
 * browser's languages that Parley has a catalogue for, else English. `<html lang>` is kept equal to it.
 */
export const LOCALES = ['en', 'zh-CN'] as const;
export type Locale = (typeof LOCALES)[number];

const STORAGE_KEY = 'parley:lang';

/** The best catalogue for a list of BCP 47 tags, most preferred first (zh, zh-Hans, zh-SG -> zh-CN). */
export function pickLocale(preferred: readonly string[]): Locale {
  for (const raw of preferred) {
    const tag = raw.toLowerCase();
    if (tag === 'zh' || tag.startsWith('zh-cn') || tag.startsWith('zh-hans') || tag.startsWith('zh-sg')) return 'zh-CN';
    if (tag === 'en' || tag.startsWith('en-')) return 'en';
  }
  return 'en';
}

function stored(): Locale | undefined {
  try {
    const v = globalThis.localStorage?.getItem(STORAGE_KEY);
    return (LOCALES as readonly string[]).includes(v ?? '') ? (v as Locale) : undefined;
  } catch {
    return undefined; // storage may be refused (private windows, sandboxed frames)
  }
}

function initial(): Locale {
  const nav = globalThis.navigator;
  return stored() ?? pickLocale(nav ? (nav.languages?.length ? nav.languages : [nav.language]) : []);
}

let current: Locale = initial();

export function locale(): Locale {
  return current;
}

/** Switches the language (remembered for next time) and sets `<html lang>`. The caller re-renders. */
export function setLocale(l: Locale, remember = true): void {
  current = l;
  if (remember) {
    try {
      globalThis.localStorage?.setItem(STORAGE_KEY, l);
    } catch {
      // not remembered; this page still switches
    }
  }
  applyLang();
}

export function applyLang(): void {
  if (typeof document !== 'undefined') document.documentElement.lang = current;
}
