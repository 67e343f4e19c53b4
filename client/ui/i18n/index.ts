/**
 * The page's words: `t(key, ...args)` looks a key up in the current language's catalogue (i18n/en.ts is the
 * reference; see its header for the format). Views call `t()` at render time, so switching language re-renders.
 */
import { en, type Catalogue, type Key } from './en.ts';
import { locale, type Locale } from './locale.ts';
import { zhCN } from './zh-CN.ts';

export const CATALOGUES: Record<Locale, Catalogue> = { en, 'zh-CN': zhCN };

type Args<K extends Key> = Catalogue[K] extends (...args: infer A) => string ? A : [];

export function t<K extends Key>(key: K, ...args: Args<K>): string {
  const entry = CATALOGUES[locale()][key] as string | ((...a: unknown[]) => string);
  return typeof entry === 'function' ? entry(...args) : entry;
}

export { applyLang, locale, LOCALES, pickLocale, setLocale, type Locale } from './locale.ts';
export { dayKey, formatBytes, formatDay, formatDuration, formatRate, formatTime } from './format.ts';
export type { Catalogue, Key } from './en.ts';
