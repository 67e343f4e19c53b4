/**
 * Links in message text: http, https and mailto addresses become links that open in a new tab without giving it
 * this page (`rel="noopener noreferrer"`); anything else, `javascript:` and `data:` included, stays plain text.
 * The text around and inside links is put in as text nodes, never parsed as HTML.
 */
import { el } from './dom.ts';

const CANDIDATE = /\b(?:https?:\/\/|mailto:)[^\s<>"']+/gi;
const ALLOWED = new Set(['http:', 'https:', 'mailto:']);
/** Punctuation that ends a sentence rather than the address ("see https://x.org."). */
const TRAILING = /[.,;:!?'"»”’)\]]+$/;

/** The address as a link target, or null when it is not an allowed, well-formed one. */
export function safeHref(raw: string): string | null {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  if (!ALLOWED.has(u.protocol)) return null;
  if (u.protocol !== 'mailto:' && !u.hostname) return null;
  return u.href;
}

/** Splits `text` into text and link nodes. */
export function linkify(text: string): (string | HTMLAnchorElement)[] {
  const out: (string | HTMLAnchorElement)[] = [];
  let last = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    let raw = match[0];
    const trail = TRAILING.exec(raw)?.[0] ?? '';
    if (trail) {
      raw = raw.slice(0, raw.length - trail.length);
      // Keep a closing bracket that belongs to the address (https://en.wikipedia.org/wiki/Foo_(bar)).
      const open = (raw.match(/\(/g) ?? []).length - (raw.match(/\)/g) ?? []).length;
      if (open > 0 && trail.startsWith(')')) raw += ')';
    }
    const href = safeHref(raw);
    if (!href) continue;
    const start = match.index;
    if (start > last) out.push(text.slice(last, start));
    out.push(el('a', { text: raw, attrs: { href, target: '_blank', rel: 'noopener noreferrer' } }));
    last = start + raw.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
