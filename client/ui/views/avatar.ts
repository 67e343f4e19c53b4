/** A round initial with a colour picked from the name, and an optional presence dot. */
import { el } from '../dom.ts';

const COLOURS = 8;

function hue(name: string): number {
  let h = 0;
  for (const ch of name.toLowerCase()) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  return h % COLOURS;
}

export function avatar(name: string, online?: boolean): HTMLElement {
  const first = [...name][0]?.toUpperCase() ?? '?';
  return el('span', { class: `avatar c${hue(name)}`, attrs: { 'aria-hidden': 'true' } }, [
    first,
    online === undefined ? null : el('span', { class: online ? 'dot online' : 'dot' }),
  ]);
}
