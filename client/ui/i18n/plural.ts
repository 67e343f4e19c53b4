/** Picks the form of a word for a number by the current language's plural rules (Intl.PluralRules). */
import { locale } from './locale.ts';

export type PluralForms = Partial<Record<Intl.LDMLPluralRule, string>> & { other: string };

const rules = new Map<string, Intl.PluralRules>();

export function plural(n: number, forms: PluralForms): string {
  const l = locale();
  let r = rules.get(l);
  if (!r) rules.set(l, (r = new Intl.PluralRules(l)));
  return forms[r.select(n)] ?? forms.other;
}
