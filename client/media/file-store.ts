/**
 * Where a received file's bytes go as they arrive, so the recipient's memory stays flat whatever the size:
 * a file in the Origin Private File System, written and read at any offset by a worker (disk-worker.ts),
 * or, when the browser offers no OPFS in this context (private windows in some browsers, no worker), the
 * page's memory up to a cap.
 *
 * The sender may send byte ranges in any order (an MP4's index first), so the store keeps the set of ranges
 * it holds; `read()` waits until the bytes asked for have arrived, which is how playback follows the arrival.
 * `complete()` gives the whole file as a Blob (an OPFS File is backed by the disk, not by memory) for Save
 * and for playing whole.
 *
 * A transfer that can resume after a reload names its file after itself (`storeName`) and is opened again
 * with the ranges it held (`resume`); `sweepStores` at page start deletes every other leftover file.
 */
import { Ranges } from '../sdk/ranges.ts';
import type { DiskReply, DiskRequest } from './disk-worker.ts';

export interface FileStore {
  readonly size: number;
  /** `disk` (OPFS) or `memory` (the fallback). */
  readonly where: 'disk' | 'memory';
  /** Bytes held so far. */
  readonly held: number;
  /** The byte ranges held so far, in order. */
  heldRanges(): [number, number][];
  /** Makes what was written survive the page (a no-op in memory). */
  flush(): Promise<void>;
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** The bytes of [start, end), once they have all arrived. Rejects once the store is closed or discarded. */
  read(start: number, end: number): Promise<Uint8Array>;
  /** From `start`, the bytes held in a row (at most `max`), once at least one is held. */
  readSome(start: number, max: number): Promise<Uint8Array>;
  /** Every byte has been written: the whole file. */
  complete(type: string): Promise<Blob>;
  /** Stops waiting readers and frees the bytes (the OPFS file is deleted). */
  discard(reason: string): void;
  /** Stops waiting readers and lets go of the file but keeps it on disk, for another page to resume. */
  release(reason: string): void;
}

/** A Blob-like view of a store that is still filling, for code written against `Blob.slice().arrayBuffer()`. */
export interface SliceSource {
  readonly size: number;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

export class StoreClosed extends Error {
  override name = 'StoreClosed';
}

/**
 * Where the worker script lives in the built client: scripts/build-client.mjs builds it under a content-hashed
 * name and defines DISK_WORKER_URL to it (outside a build, e.g. in unit tests, the plain name).
 */
declare const DISK_WORKER_URL: string | undefined;
const WORKER_URL = typeof DISK_WORKER_URL === 'string' ? DISK_WORKER_URL : '/disk-worker.js';
const PREFIX = 'parley-recv-';

interface Waiter { start: number; end: number; resolve: () => void; reject: (e: Error) => void }

abstract class BaseStore implements FileStore {
  abstract readonly where: 'disk' | 'memory';
  protected readonly ranges = new Ranges();
  private waiters: Waiter[] = [];
  protected closedWith: Error | undefined;

  constructor(readonly size: number, held: ReadonlyArray<readonly [number, number]> = []) {
    for (const [a, b] of held) this.ranges.add(a, b);
  }

  get held(): number {
    return this.ranges.total;
  }

  heldRanges(): [number, number][] {
    return this.ranges.list();
  }

  async flush(): Promise<void> {
    // In memory nothing survives the page; the disk store overrides this.
  }

  protected abstract put(offset: number, bytes: Uint8Array): Promise<void>;
  protected abstract get(start: number, end: number): Promise<Uint8Array>;
  abstract complete(type: string): Promise<Blob>;
  protected abstract free(): void;

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    if (this.closedWith) throw this.closedWith;
    if (offset < 0 || offset + bytes.byteLength > this.size) throw new RangeError(`bytes at ${offset} lie outside the file`);
    await this.put(offset, bytes);
    this.ranges.add(offset, offset + bytes.byteLength);
    this.waiters = this.waiters.filter((w) => {
      if (!this.ranges.covers(w.start, w.end)) return true;
      w.resolve();
      return false;
    });
  }

  async read(start: number, end: number): Promise<Uint8Array> {
    end = Math.min(end, this.size);
    if (this.closedWith) throw this.closedWith;
    if (!this.ranges.covers(start, end)) {
      await new Promise<void>((resolve, reject) => this.waiters.push({ start, end, resolve, reject }));
    }
    return this.get(start, end);
  }

  async readSome(start: number, max: number): Promise<Uint8Array> {
    if (this.closedWith) throw this.closedWith;
    if (this.ranges.reach(start) === start) {
      await new Promise<void>((resolve, reject) => this.waiters.push({ start, end: start + 1, resolve, reject }));
    }
    return this.get(start, Math.min(this.ranges.reach(start), start + max, this.size));
  }

  discard(reason: string): void {
    this.stop(reason);
    this.free();
  }

  release(reason: string): void {
    this.stop(reason);
    this.letGo();
  }

  private stop(reason: string): void {
    if (!this.closedWith) this.closedWith = new StoreClosed(reason);
    for (const w of this.waiters.splice(0)) w.reject(this.closedWith);
  }

  /** Lets go of the file without deleting it (memory has nothing to keep: it frees). */
  protected letGo(): void {
    this.free();
  }
}

class MemoryStore extends BaseStore {
  readonly where = 'memory' as const;
  private pieces = new Map<number, Uint8Array>();

  protected async put(offset: number, bytes: Uint8Array): Promise<void> {
    this.pieces.set(offset, bytes);
  }

  protected async get(start: number, end: number): Promise<Uint8Array> {
    const out = new Uint8Array(end - start);
    for (const [off, bytes] of this.pieces) {
      const a = Math.max(start, off);
      const b = Math.min(end, off + bytes.byteLength);
      if (a < b) out.set(bytes.subarray(a - off, b - off), a - start);
    }
    return out;
  }

  async complete(type: string): Promise<Blob> {
    const order = [...this.pieces.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b as Uint8Array<ArrayBuffer>);
    return new Blob(order, { type });
  }

  protected free(): void {
    this.pieces = new Map();
  }
}

class DiskStore extends BaseStore {
  readonly where = 'disk' as const;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (b: Uint8Array | undefined) => void; reject: (e: Error) => void }>();

  constructor(size: number, private readonly worker: Worker, readonly name: string, held: ReadonlyArray<readonly [number, number]> = []) {
    super(size, held);
    worker.onmessage = (e: MessageEvent<DiskReply>) => {
      const p = this.pending.get(e.data.id);
      if (!p) return;
      this.pending.delete(e.data.id);
      if (e.data.ok) p.resolve(e.data.bytes);
      else p.reject(new Error(e.data.error));
    };
    worker.onerror = () => {
      for (const p of this.pending.values()) p.reject(new Error('the disk worker stopped'));
      this.pending.clear();
    };
  }

  request(r: DiskRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never, transfer: Transferable[] = []): Promise<Uint8Array | undefined> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...r, id }, transfer);
    });
  }

  protected async put(offset: number, bytes: Uint8Array): Promise<void> {
    await this.request({ op: 'write', offset, bytes });
  }

  override async flush(): Promise<void> {
    if (!this.finished && !this.closedWith) await this.request({ op: 'flush' });
  }

  /**
   * The finished file, once `complete()` has begun: reads made from then on wait for it and come from it, since
   * the worker's handle is closed and the worker then terminated (a read sent to it would fail or never be
   * answered). Reads sent before are answered first: the worker serves requests in order.
   */
  private finished: Promise<File> | undefined;

  protected async get(start: number, end: number): Promise<Uint8Array> {
    if (this.finished) return new Uint8Array(await (await this.finished).slice(start, end).arrayBuffer());
    return (await this.request({ op: 'read', offset: start, length: end - start })) ?? new Uint8Array(0);
  }

  async complete(type: string): Promise<Blob> {
    this.finished ??= (async () => {
      await this.request({ op: 'close' });
      const root = await navigator.storage.getDirectory();
      const file = await (await root.getFileHandle(this.name)).getFile();
      this.worker.terminate();
      return file;
    })();
    const file = await this.finished;
    // The File keeps its disk backing; slicing it with the offered type costs no copy.
    return file.slice(0, file.size, type);
  }

  protected override letGo(): void {
    if (this.finished) return;
    void this.request({ op: 'close' }).finally(() => this.worker.terminate()).catch(() => undefined);
  }

  protected free(): void {
    if (this.finished) {
      void this.finished.then(() => navigator.storage.getDirectory()).then((root) => root.removeEntry(this.name)).catch(() => undefined);
      return;
    }
    void this.request({ op: 'remove' }).finally(() => this.worker.terminate()).catch(() => undefined);
  }
}

let sweeping: Promise<void> | undefined;

/**
 * Deletes files a previous page left behind (a reload mid-transfer, a saved file no one came back for),
 * except those named in `keep`: the files of transfers that can still resume. Once per page, before the first
 * store opens; later calls wait for the first.
 */
export function sweepStores(keep: ReadonlySet<string> = new Set()): Promise<void> {
  sweeping ??= (async () => {
    if (!navigator.storage?.getDirectory) return;
    const root = await navigator.storage.getDirectory();
    const names: string[] = [];
    for await (const name of (root as unknown as { keys(): AsyncIterable<string> }).keys()) {
      if (name.startsWith(PREFIX) && !keep.has(name)) names.push(name);
    }
    await Promise.all(names.map((n) => root.removeEntry(n).catch(() => undefined)));
  })().catch((err: unknown) => console.warn('file store: could not tidy up old files', err));
  return sweeping;
}

/** The disk file of transfer `tid` from `fromKey`: derived from the transfer, so a reloaded page finds it. */
export function storeName(fromKey: string, tid: string): string {
  return `${PREFIX}${encodeURIComponent(fromKey)}-${tid}`;
}

async function openDisk(size: number, named?: { name: string; keep: boolean; held: ReadonlyArray<readonly [number, number]> }): Promise<DiskStore> {
  if (typeof Worker === 'undefined' || !navigator.storage?.getDirectory) throw new Error('no OPFS');
  await sweepStores();
  const name = named?.name ?? `${PREFIX}${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const store = new DiskStore(size, new Worker(WORKER_URL, { type: 'module' }), name, named?.keep ? named.held : []);
  try {
    await store.request({ op: 'open', name, keep: named?.keep === true });
  } catch (err) {
    store.discard('open failed');
    throw err;
  }
  return store;
}

export interface OpenOptions {
  /** Largest file kept in memory when there is no disk. */
  memoryCapBytes: number;
  /** Skip OPFS (for tests of the fallback). */
  memoryOnly?: boolean;
  /** The disk file's name (see `storeName`); default a fresh one. */
  name?: string;
  /** Open the named file as it is, holding `held` already (a transfer resuming after a reload): disk only. */
  resume?: { held: ReadonlyArray<readonly [number, number]> };
}

/**
 * Opens a store for a file of `size` bytes: on disk when the browser allows, else in memory within the cap.
 * Throws `StoreClosed` with a plain sentence when neither is possible.
 */
export async function openFileStore(size: number, options: OpenOptions): Promise<FileStore> {
  if (!options.memoryOnly) {
    try {
      return await openDisk(size, options.name === undefined ? undefined : { name: options.name, keep: options.resume !== undefined, held: options.resume?.held ?? [] });
    } catch (err) {
      if (options.resume) throw err; // the kept bytes are on that disk or nowhere
      console.warn('file store: no disk storage, keeping the file in memory', err);
    }
  }
  if (size > options.memoryCapBytes) {
    throw new StoreClosed('This browser gives the page no disk storage here, and the file is too large to keep in memory.');
  }
  return new MemoryStore(size);
}

/** A Blob-like view for readers such as the MP4 re-mux: each slice waits for its bytes. */
export function sliceSource(store: FileStore): SliceSource {
  return {
    size: store.size,
    slice: (start, end) => ({
      arrayBuffer: async () => {
        const bytes = await store.read(start, end);
        return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
          ? bytes.buffer as ArrayBuffer
          : bytes.slice().buffer as ArrayBuffer;
      },
    }),
  };
}
