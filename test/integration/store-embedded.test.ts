/**
 * The embedded (LMDB) store: the shared Store contract, then what only a local, file-backed store promises —
 * clear start-up errors, a closed store that refuses work, data that survives `kill -9` and is shared
 * safely by several processes, sessions kept in their own small file, and the move of sessions out of the
 * main file for data directories written before that.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { open, type RootDatabase } from 'lmdb';
import { afterEach, describe, expect, it } from 'vitest';
import { skeleton } from '../../server/core/confusables.ts';
import { StoreUnavailableError, type Account, type EnqueueResult, type SessionRecord } from '../../server/core/store.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { defineAccountChangesContract, defineStoreContract, reopenableStore, tokenHash } from '../contract/store.contract.ts';
import { defineRoomStoreContract } from '../contract/room-store.contract.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = path.join(ROOT, 'test/support/embedded-enqueue-child.ts');
const T0 = 1_700_000_000_000;

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'parley-embedded-'));
}

defineStoreContract('embedded', async () => {
  const dir = await tempDir();
  const fixture = await reopenableStore(() => new EmbeddedStore({ dir }), () => rm(dir, { recursive: true, force: true }));
  const module = pathToFileURL(path.join(ROOT, 'server/store/embedded.ts')).href;
  return { ...fixture, processStore: { module, className: 'EmbeddedStore', options: { dir } } };
});

defineRoomStoreContract('embedded', async () => {
  const dir = await tempDir();
  return reopenableStore(() => new EmbeddedStore({ dir }), () => rm(dir, { recursive: true, force: true }));
});

defineAccountChangesContract('embedded', async () => {
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

      const store = newStore(dir);
      await openAsAfterReboot(store);

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

    it('keeps every session reported stored, and its indexes, when killed with SIGKILL while both files are written', async () => {
      const dir = await newDir();
      // Each step writes a session and queues a message at once, so the kill lands while both environments
      // have commits and fsyncs in flight. A step is printed only once both writes resolved.
      const child = `
        const [modulePath, dir] = process.argv.slice(1);
        const { EmbeddedStore } = await import(modulePath);
        const { createHash } = await import('node:crypto');
        const store = new EmbeddedStore({ dir });
        await store.open();
        let next = 0;
        async function step() {
          for (;;) {
            const n = next++;
            const tokenHash = createHash('sha256').update('k' + n).digest('hex');
            await Promise.all([
              store.putSession({ tokenHash, key: 'user' + (n % 10), name: 'User' + (n % 10), created: n, expires: 1e13 + n }),
              store.enqueue({ to: 'bob', from: 'Alice', fromKey: 'alice', id: 'm' + n, text: 'message ' + n, ts: Date.now() }, 1e9),
            ]);
            process.stdout.write(n + '\\n');
          }
        }
        await Promise.all(Array.from({ length: 16 }, step));
      `;
      const run = await runNode(['--input-type=module', '-e', child, path.join(ROOT, 'server/store/embedded.ts'), dir], {
        killAfter: 300,
      });
      expect(run.killedBy).toBe('SIGKILL');
      const reported = run.lines.map(Number);
      expect(reported.length).toBeGreaterThanOrEqual(300);

      const store = newStore(dir);
      await openAsAfterReboot(store);
      const missing: number[] = [];
      for (const n of reported) {
        const expected: SessionRecord = {
          tokenHash: tokenHash(`k${n}`),
          key: `user${n % 10}`,
          name: `User${n % 10}`,
          created: n,
          expires: 1e13 + n,
        };
        const session = await store.getSession(expected.tokenHash);
        if (!isDeepStrictEqual(session, expected)) missing.push(n);
        if (!(await store.findQueued('alice', `m${n}`))) missing.push(-n - 1);
      }
      expect(missing).toEqual([]);
      // The indexes came through with the records: the name index finds every session of a name, and the
      // expiry index every session (replacing marks, purging removes).
      const ofUser3 = reported.filter((n) => n % 10 === 3).map((n) => tokenHash(`k${n}`));
      expect(await store.replaceSessions('user3', tokenHash('nobody'), T0)).toEqual(expect.arrayContaining(ofUser3));
      expect(await store.purgeExpiredSessions(Infinity)).toBeGreaterThanOrEqual(reported.length);
      for (const n of reported.slice(0, 50)) expect(await store.getSession(tokenHash(`k${n}`))).toBeNull();
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

    // LMDB's open (as lmdb-js 3.5 ships it) stores the last txn id it read from the data file into the lock file
    // unguarded; a commit of another process between that read and that store is then overwritten by the next
    // write, in any process. A single writer and a process that only opens and closes show it: the writer's own
    // seqs go back. Opening again and again makes the window, a few microseconds per open, likely to be hit.
    it('loses no commit of one process while another opens and closes the directory again and again', async () => {
      const dir = await newDir();
      const opener = `
        const [modulePath, dir, times] = process.argv.slice(1);
        const { EmbeddedStore } = await import(modulePath);
        for (let i = 0; i < Number(times); i++) {
          const store = new EmbeddedStore({ dir });
          await store.open();
          await store.close();
        }
      `;
      const seed = newStore(dir);
      await seed.open();
      await seed.close();
      const [writer, opens] = await Promise.all([
        runChild([dir, 'carol', 'p1', '1', '2000']),
        runNode(['--input-type=module', '-e', opener, path.join(ROOT, 'server/store/embedded.ts'), dir, '300']),
      ]);
      expect(writer.exitCode).toBe(0);
      expect(opens.exitCode).toBe(0);
      const seqs = writer.results.map((r) => r.seq);
      expect(seqs).toHaveLength(2000);
      const backwards = seqs.filter((seq, i) => i > 0 && seq <= seqs[i - 1]!);
      expect(backwards).toEqual([]);

      const store = newStore(dir);
      await store.open();
      const fetched = await store.fetchQueue('carol', -1, 1_000_000, 0);
      expect(new Map(fetched.map((m) => [m.id, m.seq]))).toEqual(new Map(writer.results.map((r) => [r.id, r.seq])));
    });

    it('is not held up by the open-gate files of processes that died (kill -9 while opening or writing)', async () => {
      const dir = await newDir();
      const seed = newStore(dir);
      await seed.open();
      await seed.close();
      const dead = await runNode(['--input-type=module', '-e', 'process.stdout.write(String(process.pid) + "\\n")']);
      const pid = dead.lines[0]!;
      for (const env of [dir, path.join(dir, 'sessions')]) {
        await writeFile(path.join(env, 'open-gate', `opening.${pid}`), '');
        await writeFile(path.join(env, 'open-gate', `writer.${pid}`), '');
      }
      const store = newStore(dir);
      await store.open();
      const msg = { to: 'bob', from: 'Alice', fromKey: 'alice', id: 'g1', text: 'hi', ts: 1 };
      expect(await store.enqueue(msg, 10)).toEqual({ status: 'queued', seq: 1 });
      await store.putSession({ tokenHash: tokenHash('g'), key: 'bob', created: T0, expires: T0 + 1 });
      // The dead process's files were cleared away on the way.
      expect(existsSync(path.join(dir, 'open-gate', `opening.${pid}`))).toBe(false);
      expect(existsSync(path.join(dir, 'sessions', 'open-gate', `writer.${pid}`))).toBe(false);
    });

    it('is not held up by gate files whose pid now belongs to another live process (a reused pid)', async () => {
      const dir = await newDir();
      const seed = newStore(dir);
      await seed.open();
      await seed.close();
      const other = spawn('sleep', ['30'], { stdio: 'ignore' });
      try {
        // The same pid, but not the same process: it started at another time than the file says.
        for (const env of [dir, path.join(dir, 'sessions')]) {
          await writeFile(path.join(env, 'open-gate', `opening.${other.pid}.1`), '');
          await writeFile(path.join(env, 'open-gate', `writer.${other.pid}.1`), '');
        }
        const store = newStore(dir);
        await store.open();
        const msg = { to: 'bob', from: 'Alice', fromKey: 'alice', id: 'g2', text: 'hi', ts: 1 };
        expect(await store.enqueue(msg, 10)).toEqual({ status: 'queued', seq: 1 });
        expect(existsSync(path.join(dir, 'open-gate', `opening.${other.pid}.1`))).toBe(false);
        await store.close();
      } finally {
        other.kill('SIGKILL');
      }
    });
  });

  describe('sessions file', () => {
    it('keeps sessions in their own environment, and never creates them in the main one', async () => {
      const dir = await newDir();
      const store = newStore(dir);
      await store.open();
      const session: SessionRecord = { tokenHash: tokenHash('s1'), key: 'bob', name: 'Bob', created: T0, expires: T0 + 1 };
      await store.putSession(session);
      await store.close();

      expect(existsSync(path.join(dir, 'sessions', 'data.mdb'))).toBe(true);
      expect(await oldSessionCounts(dir)).toBeNull();
      await store.open();
      expect(await store.getSession(session.tokenHash)).toEqual(session);
    });

    it('refuses a token hash that is not 64 lower-case hex digits as a programming error', async () => {
      const store = newStore(await newDir());
      await store.open();
      const upper = tokenHash('s1').toUpperCase();
      for (const attempt of [
        store.getSession('h1'),
        store.getSession(upper),
        store.deleteSession(`${tokenHash('s1')}0`),
        store.replaceSessions('bob', 'x', T0),
        store.putSession({ tokenHash: upper, key: 'bob', created: T0, expires: T0 + 1 }),
      ]) {
        const error = await attempt.then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(StoreUnavailableError);
      }
      expect(await store.ping()).toBe(true);
    });
  });

  describe('skeletons of accounts made before registration claimed them', () => {
    it('are claimed once at open, the oldest look-alike holding its skeleton', async () => {
      const dir = await newDir();
      const made = (key: string, created: number): Account => ({ key, name: key, passwordHash: 'scrypt$x', created });
      // Cyrillic о in the older one: it registered first, so it keeps the skeleton it shares with bob.
      await writeOldLayout(dir, [], [made('bob', 2000), made('b\u043eb', 1000), made('alice', 3000)]);
      const store = newStore(dir);
      await store.open();
      expect(await store.claimSkeleton(skeleton('bob'), 'newcomer')).toBe('b\u043eb');
      expect(await store.claimSkeleton(skeleton('alice'), 'al\u0456ce')).toBe('alice');
      expect(await store.claimSkeleton(skeleton('carol'), 'carol')).toBe('carol');
      await store.close();

      // Once per directory: an account written behind its back afterwards is not backfilled on reopen.
      await writeOldLayout(dir, [], [made('dave', 4000)]);
      const again = newStore(dir);
      await again.open();
      expect(await again.claimSkeleton(skeleton('dave'), 'someone')).toBe('someone');
    });
  });

  describe('room invitations made before they were indexed by invitee', () => {
    it('are indexed once at open, and read without an inviter', async () => {
      const dir = await newDir();
      const root = openMain(dir);
      try {
        // As that version wrote them: [room, member key] -> the time alone, and no memberInvites database.
        const invites = root.openDB<number, [string, string]>({ name: 'roomInvites' });
        await root.transaction(() => {
          invites.putSync(['lobby', 'bob'], T0);
          invites.putSync(['attic', 'bob'], T0 + 1);
          invites.putSync(['lobby', 'carol'], T0 + 2);
        });
        await root.flushed;
      } finally {
        await root.close();
      }
      const store = newStore(dir);
      await store.open();
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([{ room: 'attic', at: T0 + 1 }, { room: 'lobby', at: T0 }]);
      expect(await store.rooms.isInvited('lobby', 'carol')).toBe(true);
      // Joining ends an old invitation as it does a new one.
      await store.rooms.createRoom({ key: 'lobby', name: 'Lobby', ownerKey: 'alice', owner: 'Alice', private: true, created: T0 }, T0);
      expect(await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0 + 3, 10)).toBe('added');
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([{ room: 'attic', at: T0 + 1 }]);
      await store.close();
      const again = newStore(dir);
      await again.open();
      expect(await again.rooms.invitesOf('carol', 10)).toEqual([{ room: 'lobby', at: T0 + 2 }]);
    });
  });

  describe('moving sessions out of the main file', () => {
    const account: Account = { key: 'alice', name: 'Alice', passwordHash: 'scrypt$x', created: T0 };

    function old(label: string, key: string, over: Partial<OldSession> = {}): OldSession {
      return { tokenHash: tokenHash(label), key, created: T0, expires: T0 + 86_400_000, ...over };
    }

    const special = [
      old('a1', 'alice', { expires: T0 + 100 }),
      old('a2', 'alice'),
      old('a3', 'alice', { replacedAt: T0 + 1 }),
      old('b1', 'bob'),
    ];
    // More than one batch of the migration.
    const bulk = Array.from({ length: 2_500 }, (_, i) => old(`t${i}`, `u${i % 50}`, { expires: T0 + 1_000 + i }));
    const all = [...special, ...bulk];

    async function expectAllSessions(store: EmbeddedStore): Promise<void> {
      const wrong: string[] = [];
      for (const s of all) {
        const got = await store.getSession(s.tokenHash);
        if (!isDeepStrictEqual(got, s)) wrong.push(`${JSON.stringify(s)}: ${JSON.stringify(got)}`);
      }
      expect(wrong).toEqual([]);
    }

    it('moves every session of the old layout once, and empties the old databases', async () => {
      const dir = await newDir();
      await writeOldLayout(dir, all, [account]);

      const store = newStore(dir);
      await store.open();
      expect(existsSync(path.join(dir, 'sessions', 'data.mdb'))).toBe(true);
      expect(await store.getAccount('alice')).toEqual(account);
      await expectAllSessions(store);
      await store.close();
      expect(await oldSessionCounts(dir)).toEqual({ sessions: 0, sessionsByKey: 0, sessionsByExpiry: 0 });

      // Opening again neither copies again nor loses anything, and the moved indexes work.
      const again = newStore(dir);
      await again.open();
      await expectAllSessions(again);
      expect([...(await again.replaceSessions('alice', tokenHash('new'), T0 + 5))].sort()).toEqual(
        [tokenHash('a1'), tokenHash('a2')].sort(),
      );
      expect((await again.getSession(tokenHash('a3')))?.replacedAt).toBe(T0 + 1);
      expect(await again.replaceSessions('bob', tokenHash('b1'), T0 + 5)).toEqual([]);
      // a1 and the first 1,000 bulk sessions expire before T0 + 2,000.
      expect(await again.purgeExpiredSessions(T0 + 2_000)).toBe(1_001);
      expect(await again.getSession(tokenHash('a1'))).toBeNull();
      expect(await again.getSession(tokenHash('t999'))).toBeNull();
      expect(await again.getSession(tokenHash('t1000'))).not.toBeNull();
      // Exactly one expiry entry per remaining session: nothing was indexed twice.
      expect(await again.purgeExpiredSessions(Infinity)).toBe(all.length - 1_001);
    });

    it('redoes a move interrupted before the old databases were emptied, without duplicating anything', async () => {
      const dir = await newDir();
      await writeOldLayout(dir, all, [account]);
      const first = newStore(dir);
      await first.open();
      await first.close();
      // As if the process died after the copy was durable but before the old databases were emptied.
      await writeOldLayout(dir, all);

      const store = newStore(dir);
      await store.open();
      await expectAllSessions(store);
      await store.close();
      expect(await oldSessionCounts(dir)).toEqual({ sessions: 0, sessionsByKey: 0, sessionsByExpiry: 0 });
      await store.open();
      expect([...(await store.replaceSessions('alice', tokenHash('new'), T0 + 5))].sort()).toEqual(
        [tokenHash('a1'), tokenHash('a2')].sort(),
      );
      expect(await store.purgeExpiredSessions(Infinity)).toBe(all.length);
    });

    it('is moved once when several processes open the old directory at the same time', async () => {
      const dir = await newDir();
      await writeOldLayout(dir, all, [account]);
      const child = `
        const [modulePath, dir] = process.argv.slice(1);
        const { EmbeddedStore } = await import(modulePath);
        const store = new EmbeddedStore({ dir });
        await store.open();
        await store.close();
      `;
      const runs = await Promise.all(
        Array.from({ length: 3 }, () =>
          runNode(['--input-type=module', '-e', child, path.join(ROOT, 'server/store/embedded.ts'), dir]),
        ),
      );
      expect(runs.map((r) => r.exitCode)).toEqual([0, 0, 0]);
      expect(await oldSessionCounts(dir)).toEqual({ sessions: 0, sessionsByKey: 0, sessionsByExpiry: 0 });
      const store = newStore(dir);
      await store.open();
      await expectAllSessions(store);
      expect(await store.purgeExpiredSessions(Infinity)).toBe(all.length);
    });
  });
});

/** A session as the version before the sessions environment kept it. */
interface OldSession {
  tokenHash: string;
  key: string;
  created: number;
  expires: number;
  replacedAt?: number;
}

/** Opens the main environment the way that version did. */
function openMain(dir: string, readOnly = false): RootDatabase {
  return open({ path: dir, noSubdir: false, maxDbs: 16, overlappingSync: !readOnly, readOnly });
}

/** Writes sessions (and accounts) into `dir` as that version did: in the main environment, hex keys, map values. */
async function writeOldLayout(dir: string, sessions: OldSession[], accounts: Account[] = []): Promise<void> {
  const root = openMain(dir);
  try {
    const records = root.openDB<OldSession, string>({ name: 'sessions' });
    const byKey = root.openDB<string, string>({ name: 'sessionsByKey', dupSort: true, encoding: 'ordered-binary' });
    const byExpiry = root.openDB<null, [number, string]>({ name: 'sessionsByExpiry' });
    const accountsDb = root.openDB<Account, string>({ name: 'accounts' });
    await root.transaction(() => {
      for (const a of accounts) accountsDb.putSync(a.key, a);
      for (const s of sessions) {
        records.putSync(s.tokenHash, s);
        byKey.putSync(s.key, s.tokenHash);
        byExpiry.putSync([s.expires, s.tokenHash], null);
      }
    });
    await root.flushed;
  } finally {
    await root.close();
  }
}

/** Entries left in the old layout's session databases of the main environment; null when there are none. */
async function oldSessionCounts(dir: string): Promise<Record<string, number> | null> {
  const root = openMain(dir, true);
  try {
    // Read-only, openDB answers undefined for a database that does not exist (its types do not say so).
    const sessions = root.openDB({ name: 'sessions' }) as RootDatabase | undefined;
    if (!sessions) return null;
    return {
      sessions: sessions.getCount(),
      sessionsByKey: root.openDB({ name: 'sessionsByKey', dupSort: true, encoding: 'ordered-binary' }).getCount(),
      sessionsByExpiry: root.openDB({ name: 'sessionsByExpiry' }).getCount(),
    };
  } finally {
    await root.close();
  }
}

/**
 * Opens the store as lmdb-js would after a reboot. LMDB_RESTORE=safe makes it keep only transactions marked
 * as fsync'ed; without it, lmdb-js would also trust unsynced commits, because the boot id is unchanged, and a
 * test could pass on a store that never waited for the disk. Both environments are opened inside open().
 */
async function openAsAfterReboot(store: EmbeddedStore): Promise<void> {
  const saved = process.env.LMDB_RESTORE;
  process.env.LMDB_RESTORE = 'safe';
  try {
    await store.open();
  } finally {
    if (saved === undefined) delete process.env.LMDB_RESTORE;
    else process.env.LMDB_RESTORE = saved;
  }
}

interface ChildRun {
  results: Array<{ id: string } & Extract<EnqueueResult, { seq: number }>>;
  exitCode: number | null;
  killedBy: NodeJS.Signals | null;
}

/**
 * Runs test/support/embedded-enqueue-child.ts and collects every enqueue it reported until its stdout closed.
 * With `killAfter`, sends SIGKILL as soon as that many enqueues were reported; lines printed before the
 * signal landed are collected too, since each of them was also a resolved enqueue.
 */
async function runChild(args: string[], options: { killAfter?: number } = {}): Promise<ChildRun> {
  const run = await runNode([CHILD, ...args], options);
  const results: ChildRun['results'] = [];
  for (const line of run.lines) {
    const parsed = JSON.parse(line) as { id: string } & EnqueueResult;
    if (parsed.status !== 'queued') throw new Error(`child reported ${line}`);
    results.push(parsed);
  }
  return { results, exitCode: run.exitCode, killedBy: run.killedBy };
}

interface NodeRun {
  lines: string[];
  exitCode: number | null;
  killedBy: NodeJS.Signals | null;
}

/**
 * Runs `node --import tsx ...args` from the repository root and collects every line it printed until its
 * stdout closed. With `killAfter`, sends SIGKILL as soon as that many lines were read. stdout to a pipe is
 * synchronous on Linux, so a line the parent has read was written after whatever the child awaited before it.
 */
function runNode(args: string[], options: { killAfter?: number } = {}): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (options.killAfter !== undefined && lines.length === options.killAfter) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (exitCode, killedBy) => {
      if (killedBy !== 'SIGKILL' && exitCode !== 0) reject(new Error(`child failed (${exitCode}): ${stderr}`));
      else resolve({ lines, exitCode, killedBy });
    });
  });
}
