/**
 * The disk half of the recipient's file store (see file-store.ts), run as a dedicated worker because the
 * Origin Private File System's synchronous access handle, the only OPFS API that can read a file while it is
 * being written at arbitrary offsets, exists only in workers. One worker per received file; requests are
 * answered in order, each with the id it came with.
 */
// Typed here rather than with lib "webworker", which cannot share a program with the page's DOM types.
interface SyncHandle {
  read(buffer: Uint8Array, options: { at: number }): number;
  write(buffer: Uint8Array, options: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}
interface WorkerScope { postMessage(message: unknown, transfer?: Transferable[]): void; onmessage: ((e: MessageEvent) => void) | null }
const scope = self as unknown as WorkerScope;

export type DiskRequest =
  | { id: number; op: 'open'; name: string; keep?: boolean }
  | { id: number; op: 'flush' }
  | { id: number; op: 'write'; offset: number; bytes: Uint8Array }
  | { id: number; op: 'read'; offset: number; length: number }
  | { id: number; op: 'close' }
  | { id: number; op: 'remove' };

export type DiskReply = { id: number; ok: true; bytes?: Uint8Array } | { id: number; ok: false; error: string };

let handle: SyncHandle | undefined;

/**
 * The file's access handle. After a reload the previous page's worker may not have let go of the file yet
 * (one handle per file at a time): ask again for a few seconds before giving up.
 */
async function lockedHandle(fh: { createSyncAccessHandle(): Promise<SyncHandle> }): Promise<SyncHandle> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fh.createSyncAccessHandle();
    } catch (err) {
      if (attempt >= 50 || (err as Error).name !== 'NoModificationAllowedError') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
let root: FileSystemDirectoryHandle | undefined;
let fileName = '';

async function serve(r: DiskRequest): Promise<Uint8Array | undefined> {
  switch (r.op) {
    case 'open': {
      root = await navigator.storage.getDirectory();
      fileName = r.name;
      const fh = await root.getFileHandle(r.name, { create: true });
      handle = await lockedHandle(fh as unknown as { createSyncAccessHandle(): Promise<SyncHandle> });
      // A file kept for a transfer that resumes holds bytes already received: keep them.
      if (!r.keep) handle.truncate(0);
      return undefined;
    }
    case 'flush':
      handle?.flush();
      return undefined;
    case 'write': {
      if (!handle) throw new Error('not open');
      let done = 0;
      while (done < r.bytes.byteLength) done += handle.write(r.bytes.subarray(done), { at: r.offset + done });
      return undefined;
    }
    case 'read': {
      if (!handle) throw new Error('not open');
      const out = new Uint8Array(r.length);
      let done = 0;
      while (done < r.length) {
        const n = handle.read(out.subarray(done), { at: r.offset + done });
        if (n === 0) throw new Error(`read past the end at ${r.offset + done}`);
        done += n;
      }
      return out;
    }
    case 'close':
      handle?.flush();
      handle?.close();
      handle = undefined;
      return undefined;
    case 'remove':
      handle?.close();
      handle = undefined;
      if (root && fileName) await root.removeEntry(fileName).catch(() => undefined);
      return undefined;
  }
}

// Requests run one after another: a read never overtakes the write it waits for.
let tail: Promise<unknown> = Promise.resolve();
scope.onmessage = (e: MessageEvent) => {
  const r = e.data as DiskRequest;
  tail = tail.then(() => serve(r)).then(
    (bytes) => {
      const reply: DiskReply = bytes ? { id: r.id, ok: true, bytes } : { id: r.id, ok: true };
      scope.postMessage(reply, bytes ? [bytes.buffer] : []);
    },
    (err: unknown) => {
      const reply: DiskReply = { id: r.id, ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
      scope.postMessage(reply);
    },
  );
};
