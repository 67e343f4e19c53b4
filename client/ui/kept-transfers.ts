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
import { KeptRecords } from './kept-records.ts';

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

const records = new KeptRecords<KeptRecord>('parley.kept-transfers.', 'could not remember a transfer for resuming');

/** The transfers still resumable; expired ones are forgotten (their files go with the next sweep). */
export function keptTransfers(meKey: string): KeptRecord[] {
  return records.live(meKey).live;
}

export function keepTransfer(meKey: string, r: KeptRecord): void {
  records.put(meKey, r, (x) => x.file === r.file);
}

export function forgetTransfer(meKey: string, file: string): void {
  records.remove(meKey, (x) => x.file === file);
}

/** The disk files of every account's resumable transfers in this browser (none may be swept away). */
export function allKeptFiles(): Set<string> {
  return new Set(records.allLive().map((r) => r.file));
}
