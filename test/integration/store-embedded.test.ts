/**
 * The embedded (LMDB) store: the shared Store contract, then what only a local, file-backed store promises —
 * clear start-up errors, a closed store that refuses work, and data that survives `kill -9` and is shared
 * safely by several processes.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError, type EnqueueResult } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { defineStoreContract, reopenableStore } from '../contract/store.contract.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = path.join(ROOT, 'test/support/embedded-enqueue-child.ts');

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'parley-embedded-'));
}

defineStoreContract('embedded', async () => {
  const dir = await tempDir();
  return reopenableStore(() => new EmbeddedStore({ dir }), () => rm(dir, { recursive: true, force: true }));
});

describe('EmbeddedStore', () => {
  const dirs: string[] = [];
  const stores: EmbeddedStore[] = [];

  async function newDir(): Promise<string> {
    const dir = await tempDir();
    dirs.push(dir);
    return dir;
  }

  function newStore(dir: string): EmbeddedStore {
    const store = new EmbeddedStore({ dir });
    stores.push(store);
    return store;
  }

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const dir of dirs.splice(0)) {
      await chmod(dir, 0o700).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('opening', () => {
    it('creates a missing data directory, also one whose name has a dot', async () => {
      const dir = path.join(await newDir(), 'nested', 'data.v1');
      const store = newStore(dir);
      await store.open();
      expect(await store.ping()).toBe(true);
      // A directory holding LMDB's files, not a file called data.v1.
      expect(existsSync(path.join(dir, 'data.mdb'))).toBe(true);
    });

    it('explains a data directory that is a file', async () => {
      const file = path.join(await newDir(), 'not-a-dir');
      await writeFile(file, 'x');
      const failure = newStore(file).open();
      await expect(failure).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(failure).rejects.toThrow(`data directory "${file}" is not a writable directory`);
    });

    it('explains a data directory that cannot be created', async () => {
      const file = path.join(await newDir(), 'file');
      await writeFile(file, 'x');
      const dir = path.join(file, 'data');
      await expect(newStore(dir).open()).rejects.toThrow(/is not a writable directory \(ENOTDIR/);
    });

    // root may write anywhere, so the check would pass for the wrong reason.
    it.skipIf(process.getuid?.() === 0)('explains a data directory it may not write to', async () => {
      const dir = path.join(await newDir(), 'readonly');
      await mkdir(dir);
      await chmod(dir, 0o500);
      await expect(newStore(dir).open()).rejects.toThrow(/is not a writable directory \(EACCES/);
    });

    it('opens once when open is called concurrently or again', async () => {
      const store = newStore(await newDir());
      await Promise.all([store.open(), store.open()]);
      await store.open();
      expect(await store.ping()).toBe(true);
    });
  });

  describe('when closed', () => {
    it('refuses every operation with StoreUnavailableError and pings false', async () => {
      const store = newStore(await newDir());
      await store.open();
      await store.close();
      expect(await store.ping()).toBe(false);
      const msg = { to: 'bob', from: 'Alice', fromKey: 'alice', id: 'x1', text: 'hi', ts: 1 };
      await expect(store.enqueue(msg, 10)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.getAccount('bob')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.fetchQueue('bob', 0, 10, 0)).rejects.toBeInstanceOf(StoreUnavailableError);
    });

    it('can be opened again and still has its data', async () => {
      const store = newStore(await newDir());
      await store.open();
      const msg = { to: 'bob', from: 'Alice', fromKey: 'alice', id: 'x1', text: 'hi', ts: 1 };
      const first = await store.enqueue(msg, 10);
      await store.close();
      await store.open();
      expect(await store.findQueued('alice', 'x1')).toEqual({ ...msg, seq: (first as { seq: number }).seq });
    });
  });

  describe('durability', () => {
    it('keeps every message reported queued when the process is killed with SIGKILL', async () => {
      const dir = await newDir();
      const reported = await runChild([dir, 'bob', 'alice', '16'], { killAfter: 400 });
      expect(reported.killedBy).toBe('SIGKILL');
      expect(reported.results.length).toBeGreaterThanOrEqual(400);

      // LMDB_RESTORE=safe makes lmdb-js reopen as it would after a reboot: it keeps only transactions marked
      // as fsync'ed. Without it, lmdb-js would also trust unsynced commits, because the boot id is unchanged,
      // and the test could pass on a store that never waited for the disk.
      const saved = process.env.LMDB_RESTORE;
      process.env.LMDB_RESTORE = 'safe';
      const store = newStore(dir);
      try {
        await store.open();
      } finally {
        if (saved === undefined) delete process.env.LMDB_RESTORE;
        else process.env.LMDB_RESTORE = saved;
      }

      const fetched = await store.fetchQueue('bob', -1, 1_000_000, 0);
      const seqOf = new Map(fetched.map((m) => [m.id, m.seq]));
      const missing = reported.results.filter((r) => seqOf.get(r.id) !== r.seq);
      expect(missing).toEqual([]);
      for (let i = 1; i < fetched.length; i++) expect(fetched[i]!.seq).toBeGreaterThan(fetched[i - 1]!.seq);
      // The counter and the indexes came through the crash consistent with the records.
      expect(await store.queueLength('bob')).toBe(fetched.length);
      for (const r of reported.results.slice(0, 20)) expect((await store.findQueued('alice', r.id))?.seq).toBe(r.seq);
      const resend = await store.enqueue(
        { to: 'bob', from: 'alice', fromKey: 'alice', id: reported.results[0]!.id, text: 'again', ts: Date.now() },
        1_000_000,
      );
      expect(resend).toEqual({ status: 'duplicate', seq: reported.results[0]!.seq });
    });

    it('hands out distinct increasing seqs when two processes share one store', async () => {
      const dir = await newDir();
      const [a, b] = await Promise.all([
        runChild([dir, 'carol', 'p1', '4', '150']),
        runChild([dir, 'carol', 'p2', '4', '150']),
      ]);
      expect(a.exitCode).toBe(0);
      expect(b.exitCode).toBe(0);
      const all = [...a.results, ...b.results];
      expect(all).toHaveLength(300);
      expect(new Set(all.map((r) => r.seq)).size).toBe(300);

      const store = newStore(dir);
      await store.open();
      const fetched = await store.fetchQueue('carol', -1, 1_000_000, 0);
      expect(fetched).toHaveLength(300);
      for (let i = 1; i < fetched.length; i++) expect(fetched[i]!.seq).toBeGreaterThan(fetched[i - 1]!.seq);
      expect(new Map(fetched.map((m) => [m.id, m.seq]))).toEqual(new Map(all.map((r) => [r.id, r.seq])));
      expect(await store.queueLength('carol')).toBe(300);
    });
  });
});

interface ChildRun {
  results: Array<{ id: string } & Extract<EnqueueResult, { seq: number }>>;
  exitCode: number | null;
  killedBy: NodeJS.Signals | null;
}

/**
 * Runs test/support/embedded-enqueue-child.ts and collects every line it printed until its stdout closed.
 * With `killAfter`, sends SIGKILL as soon as that many enqueues were reported; lines printed before the
 * signal landed are collected too, since each of them was also a resolved enqueue.
 */
function runChild(args: string[], options: { killAfter?: number } = {}): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const results: ChildRun['results'] = [];
    let stderr = '';
    let failure: Error | null = null;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line) as { id: string } & EnqueueResult;
      if (parsed.status !== 'queued') failure ??= new Error(`child reported ${line}`);
      else results.push(parsed);
      if (options.killAfter !== undefined && results.length === options.killAfter) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (exitCode, killedBy) => {
      if (failure) reject(failure);
      else if (killedBy !== 'SIGKILL' && exitCode !== 0) reject(new Error(`child failed (${exitCode}): ${stderr}`));
      else resolve({ results, exitCode, killedBy });
    });
  });
}
