/**
 * What the sender's page keeps of files it is sending, so that a transfer cut by a reload of this page, or by
 * a newer page of this browser taking the session over, can go on from the new page: a copy of the file in
 * IndexedDB, and per transfer a small record in localStorage (to whom, what, in which order its bytes go, its
 * conversation record, until when it can resume).
 *
 * Why a copy: a `File` from a file input or a drop is the page's only way to the bytes, and it dies with the
 * page. Put into IndexedDB it is cloned, and Chromium copies the bytes into the origin's storage (measured: a
 * 512 MiB file grew the profile by 512 MiB in 1.9 s; an off-the-record context stores a reference to the picked
 * file instead, which stops reading if the file changes on disk), so the copy reads back byte for byte after a
 * reload (docs/architecture.md, "Resuming a cut transfer"). A FileSystemFileHandle would avoid the copy, but the page takes
 * files from an input, a drop or a paste, and a handle read back after a reload needs the person to grant
 * access again with a click. The copy is made while the file is being sent, not before; a reload before it is
 * complete finds no record, and the transfer cannot go on from this side.
 *
 * The records are written synchronously (localStorage), so the page can go away the next moment; `until` is
 * refreshed while sending, so a reload's cut is within a second of it. A copy is deleted when its transfer is
 * over (sent, cancelled, given up, expired) and at every page start when no live record names it.
 */
import type { FileMeta } from '../sdk/index.ts';
import type { StoredMessage } from './history.ts';
import { KeptRecords } from './kept-records.ts';

export interface SendRecord {
  tid: string;
  /** The recipient's display name. */
  to: string;
  meta: FileMeta;
  /** The byte ranges of the file in the order they are sent (client/media/prepare.ts). */
  ranges: [number, number][];
  /** Until when (ms since the epoch) the transfer can resume, as last known. */
  until: number;
  /** The card's conversation record, so the card after a reload takes its place. */
  record: StoredMessage;
  /**
   * The copy is complete (its IndexedDB transaction committed). Written before the copy starts, false, so that
   * no sweep deletes a copy being made; a page that finds it false knows the file was not kept.
   */
  copied: boolean;
}

const records = new KeptRecords<SendRecord>('parley.kept-sends.', 'could not remember a file being sent');
const DB = 'parley-sending';
const FILES = 'files';

/** The transfers of `meKey` still resumable; expired ones are forgotten and their copies deleted. */
export function keptSends(meKey: string): SendRecord[] {
  const { live, expired } = records.live(meKey);
  for (const r of expired) void deleteCopy(r.tid);
  return live;
}

export function keepSend(meKey: string, r: SendRecord): void {
  records.put(meKey, r, (x) => x.tid === r.tid);
}

/** Changes a kept record (no-op when the transfer is not kept). */
export function updateSend(meKey: string, tid: string, change: Partial<Pick<SendRecord, 'until' | 'copied'>>): void {
  const list = records.load(meKey);
  const r = list.find((x) => x.tid === tid);
  if (!r) return;
  Object.assign(r, change);
  records.save(meKey, list);
}

/** The transfer is over: its record goes, and its copy when `copied` (a copy may exist, made or being made). */
export function forgetSend(meKey: string, tid: string, copied = true): void {
  const had = records.remove(meKey, (x) => x.tid === tid);
  if (copied || had) void deleteCopy(tid);
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(FILES);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB would not open'));
    req.onblocked = () => reject(new Error('IndexedDB is blocked by another page'));
  });
}

async function withStore<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(FILES, mode);
      const req = fn(tx.objectStore(FILES));
      // Resolved at commit, not at the request: a put of a large file is on disk only then.
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error ?? req.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

/** Copies `file` into this origin's storage for transfer `tid`. Rejects when it could not (e.g. quota). */
export async function copyFile(tid: string, file: Blob): Promise<void> {
  await withStore('readwrite', (s) => s.put(file, tid));
}

/** The copy kept for `tid`, or undefined when there is none. */
export async function loadCopy(tid: string): Promise<Blob | undefined> {
  const v = await withStore<unknown>('readonly', (s) => s.get(tid));
  return v instanceof Blob ? v : undefined;
}

async function deleteCopy(tid: string): Promise<void> {
  try {
    await withStore('readwrite', (s) => s.delete(tid));
  } catch (err) {
    console.warn('could not delete a kept copy of a sent file', err);
  }
}

/**
 * Deletes every copy no live record of any account in this browser names (a page closed for good, a record
 * that expired while no page was open). Returns how many went.
 */
export async function sweepCopies(): Promise<number> {
  const live = new Set(records.allLive().map((r) => r.tid));
  const keys = await withStore('readonly', (s) => s.getAllKeys());
  const dead = keys.filter((k) => typeof k !== 'string' || !live.has(k));
  if (dead.length > 0) await withStore('readwrite', (s) => { for (const k of dead) s.delete(k); return s.count(); });
  return dead.length;
}
