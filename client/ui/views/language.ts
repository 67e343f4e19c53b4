/** The language switch: each language named in itself; choosing one remembers it and re-renders the page. */
import { el } from '../dom.ts';
import { CATALOGUES, LOCALES, locale, setLocale, t, type Locale } from '../i18n/index.ts';

export function languageSwitch(onSwitched: () => void): HTMLElement {
  const select = el('select', { class: 'lang-switch', attrs: { 'aria-label': t('lang.label'), title: t('lang.label') } },
    LOCALES.map((l) => el('option', { text: CATALOGUES[l]['lang.name'], attrs: { value: l, lang: l, selected: l === locale() } })));
  select.addEventListener('change', () => {
    setLocale(select.value as Locale);
    onSwitched();
    document.querySelector<HTMLSelectElement>('.lang-switch')?.focus(); // the new page's switch
  });
  return select;
}
