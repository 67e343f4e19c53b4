/**
 * The catalogues: every language has exactly the keys of English, each entry of the same shape (a string, or a
 * function taking as many arguments), and none is empty; the browser's languages pick the right one; plurals,
 * dates and sizes go through Intl in the chosen language.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CATALOGUES, formatBytes, formatDay, LOCALES, pickLocale, setLocale, t } from '../../client/ui/i18n/index.ts';
import { en } from '../../client/ui/i18n/en.ts';
import { files as enFiles } from '../../client/ui/i18n/files-en.ts';
import { filesZhCN } from '../../client/ui/i18n/files-zh-CN.ts';

/** A sample argument list for an entry: strings for names, a number when the English entry counts. */
function sample(fn: (...a: never[]) => string): unknown[] {
  return Array.from({ length: fn.length }, (_, i) => (/unread/.test(fn.toString()) ? 3 : `x${i}`));
}

describe('catalogues', () => {
  afterEach(() => setLocale('en', false));

  for (const locale of LOCALES) {
    it(`${locale} has every English key, each of the same shape, none empty`, () => {
      const cat = CATALOGUES[locale] as Record<string, unknown>;
      const reference = en as Record<string, unknown>;
      expect(Object.keys(cat).sort()).toEqual(Object.keys(reference).sort());
      for (const [key, ref] of Object.entries(reference)) {
        const entry = cat[key];
        expect(typeof entry, key).toBe(typeof ref);
        if (typeof ref === 'function') {
          expect((entry as () => string).length, `${key}: arguments`).toBe((ref as () => string).length);
          const out = (entry as (...a: unknown[]) => string)(...sample(ref as () => string));
          expect(out.trim(), key).not.toBe('');
        } else {
          expect((entry as string).trim(), key).not.toBe('');
        }
      }
    });
  }

  it('the file-transfer words of Chinese have every English key (nested by kind), each of the same shape', () => {
    const walk = (ref: Record<string, unknown>, other: Record<string, unknown>, path: string): void => {
      expect(Object.keys(other).sort(), path).toEqual(Object.keys(ref).sort());
      for (const [key, value] of Object.entries(ref)) {
        const entry = other[key];
        expect(typeof entry, `${path}${key}`).toBe(typeof value);
        if (typeof value === 'object' && value !== null) walk(value as Record<string, unknown>, entry as Record<string, unknown>, `${path}${key}.`);
        else if (typeof value === 'function') expect((entry as () => string).length, `${path}${key}: arguments`).toBe((value as () => string).length);
        else expect((entry as string).trim(), `${path}${key}`).not.toBe('');
      }
    };
    walk(enFiles as unknown as Record<string, unknown>, filesZhCN as unknown as Record<string, unknown>, 'files.');
  });

  it('Chinese differs from English where words are shown (not a copy)', () => {
    const zh = CATALOGUES['zh-CN'] as Record<string, unknown>;
    const same = Object.entries(en).filter(([k, v]) => typeof v === 'string' && zh[k] === v && !/^(MP4|WebM)/.test(v));
    expect(same.map(([k]) => k)).toEqual([]);
  });
});

describe('choosing and formatting', () => {
  afterEach(() => setLocale('en', false));

  it('picks a catalogue from the browser languages, in order', () => {
    expect(pickLocale(['zh-CN', 'en-US'])).toBe('zh-CN');
    expect(pickLocale(['zh-Hans-CN'])).toBe('zh-CN');
    expect(pickLocale(['zh'])).toBe('zh-CN');
    expect(pickLocale(['fr-FR', 'en-GB', 'zh-CN'])).toBe('en');
    expect(pickLocale(['fr-FR'])).toBe('en');
    expect(pickLocale([])).toBe('en');
  });

  it('plurals by Intl.PluralRules', () => {
    expect(t('contacts.unread', 1)).toBe('1 unread message');
    expect(t('contacts.unread', 2)).toBe('2 unread messages');
    setLocale('zh-CN', false);
    expect(t('contacts.unread', 2)).toBe('2 条未读消息');
  });

  it('days, times and sizes in the chosen language', () => {
    const now = new Date(2026, 5, 10, 15, 0).getTime();
    expect(formatDay(now, now)).toBe('Today');
    expect(formatDay(now - 86_400_000, now)).toBe('Yesterday');
    setLocale('zh-CN', false);
    expect(formatDay(now, now)).toBe('今天');
    expect(formatDay(now - 86_400_000, now)).toBe('昨天');
    expect(formatDay(new Date(2026, 2, 3).getTime(), now)).toContain('3月3日');
    expect(formatBytes(3 * 1024 * 1024)).toBe('3 MB');
    expect(t('state.delivered')).toBe('已送达');
  });
});
