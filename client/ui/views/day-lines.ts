/** Day lines ("Today", "Yesterday", "Monday 3 March") in a message list, one-to-one or a room's. */
import { el } from '../dom.ts';
import { dayKey, formatDay } from '../i18n/index.ts';

/**
 * Puts a day line ("Today", "Yesterday", "Monday 3 March") before the first message of each day, in the
 * page's language; run after a message lands out of order (appending checks only its neighbour).
 */
export function placeDaySeparators(list: HTMLOListElement): void {
  for (const old of list.querySelectorAll(':scope > .day-sep')) old.remove();
  let day = '';
  for (const li of [...list.querySelectorAll<HTMLLIElement>(':scope > .msg')]) {
    const ts = Number(li.dataset.ts);
    if (!Number.isFinite(ts)) continue;
    const key = dayKey(ts);
    if (key === day) continue;
    day = key;
    list.insertBefore(daySeparator(ts), li);
  }
}

export function daySeparator(ts: number): HTMLLIElement {
  return el('li', { class: 'day-sep', attrs: { role: 'heading', 'aria-level': '3', 'data-ts': String(ts) } }, [el('span', { text: formatDay(ts) })]);
}

/** "Today" becomes "Yesterday" after midnight: relabels the day lines when a new day starts in the list. */
export function relabelDays(list: HTMLOListElement): void {
  for (const sep of list.querySelectorAll<HTMLLIElement>(':scope > .day-sep')) {
    const label = formatDay(Number(sep.dataset.ts));
    if (sep.textContent !== label) sep.firstElementChild!.textContent = label;
  }
}

/** `li` (at `ts`) was appended at the end after `prev`: a day line goes before it only if it starts a new day. */
export function dayLineIfNew(list: HTMLOListElement, li: HTMLLIElement, prev: HTMLElement | undefined, ts: number): void {
  if (prev && dayKey(Number(prev.dataset.ts)) === dayKey(ts)) return;
  list.insertBefore(daySeparator(ts), li);
  relabelDays(list);
}
