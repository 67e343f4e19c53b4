/**
 * What the recipient's page remembers of files it is receiving to disk, so that a transfer cut by a reload can
 * resume: per transfer, who sends it, what it is, its conversation record, and the byte ranges already in its
 * disk file (client/media/file-store.ts names that file from the transfer). Kept in localStorage (small, and
 * written synchronously, so it is there even when the page goes away the next moment), one list per account.
 *
 * The ranges written here are only ever ranges whose bytes are on disk: a record that lags behind costs a few
 * bytes sent again, never a hole.
 */
import type { FileMeta } from '../sdk/index.ts';
import type { StoredMessage } from './history.ts';

export interface KeptRecord {
  tid: string;
  from: string;
  meta: FileMeta;
  /** The disk file (see file-store.ts `storeName`). */
  file: string;
  held: [number, number][];
  /** Until when (ms since the epoch) the transfer can resume. */
  until: number;
  /** The card's conversation record, so the resumed card takes its place. */
  record: StoredMessage;
}

const PREFIX = 'parley.kept-transfers.';
const key = (meKey: string) => `${PREFIX}${meKey}`;

function load(meKey: string): KeptRecord[] {
  try {
    const list = JSON.parse(localStorage.getItem(key(meKey)) ?? '[]') as unknown;
    return Array.isArray(list) ? (list as KeptRecord[]) : [];
  } catch {
    return []; // unreadable: nothing to resume
  }
}

function save(meKey: string, list: KeptRecord[]): void {
  try {
    if (list.length === 0) localStorage.removeItem(key(meKey));
    else localStorage.setItem(key(meKey), JSON.stringify(list));
  } catch (err) {
    console.warn('could not remember a transfer for resuming', err);
  }
}

/** The transfers still resumable; expired ones are forgotten (their files go with the next sweep). */
export function keptTransfers(meKey: string): KeptRecord[] {
  const now = Date.now();
  const list = load(meKey);
  const live = list.filter((r) => r.until > now);
  if (live.length !== list.length) save(meKey, live);
  return live;
}

export function keepTransfer(meKey: string, r: KeptRecord): void {
  save(meKey, [...load(meKey).filter((x) => x.file !== r.file), r]);
}

export function forgetTransfer(meKey: string, file: string): void {
  const list = load(meKey);
  const rest = list.filter((x) => x.file !== file);
  if (rest.length !== list.length) save(meKey, rest);
}

/** The disk files of every account's resumable transfers in this browser (none may be swept away). */
export function allKeptFiles(): Set<string> {
  const files = new Set<string>();
  const now = Date.now();
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (!k?.startsWith(PREFIX)) continue;
    for (const r of load(k.slice(PREFIX.length))) if (r.until > now) files.add(r.file);
  }
  return files;
}
