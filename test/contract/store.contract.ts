/**
 * The Store contract: what every adapter of the port in server/core/store.ts must do, stated once.
 *
 * An adapter's integration test calls `defineStoreContract('embedded', factory)` (or 'mongodb', ...) and gets
 * one `describe` block. Nothing here knows how an adapter keeps its data; the tests only use the port.
 * Two things are deliberately left open because the port leaves them open: seqs need not start at 1 or be
 * dense, and the order of `replaceSessions`' result is unspecified (tests sort it).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ProcessStoreSpec } from '../support/store-child.ts';
import type {
  Account,
  NewQueuedMessage,
  QueuedMessage,
  SessionRecord,
  Store,
} from '../../server/core/store.ts';

/** What a contract factory hands back for one test. */
export interface StoreFixture {
  /** An opened store over empty data, used by this test only. */
  store: Store;
  /** Closes every store this fixture opened (including reopened ones) and removes its data. */
  cleanup: () => Promise<void>;
  /**
   * For adapters whose data outlives the Store object: opens and returns a *new* Store over the same data.
   * The test closes `store` before calling it. When absent, the persistence tests are skipped.
   */
  reopen?: () => Promise<Store>;
  /**
   * How another OS process opens a store over the same data (test/support/store-child.ts). When absent, the
   * cross-process cases are skipped.
   */
  processStore?: ProcessStoreSpec;
}

/**
 * A token hash the way the server makes them (SHA-256, 64 lower-case hex digits), named by a short label so
 * tests stay readable. Adapters may rely on that form (the embedded one stores the raw bytes).
 */
export function tokenHash(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

/** The cap used where the test is not about the cap: far above anything a test queues. */
const NO_CAP = 1_000_000;
const T0 = 1_700_000_000_000;

/**
 * Registers the Store contract suite for one adapter.
 *
 * @param label adapter name shown in the test report (`embedded`, `mongodb`).
 * @param makeStore called before every test; must return an opened store on data no other test sees.
 */
export function defineStoreContract(label: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${label}`, () => {
    let fixture: StoreFixture;
    let store: Store;
    let nextId = 0;

    beforeEach(async () => {
      fixture = await makeStore();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    /** A message with a fresh id; fields can be overridden per test. */
    function msg(over: Partial<NewQueuedMessage> = {}): NewQueuedMessage {
      const fromKey = over.fromKey ?? 'alice';
      return {
        to: 'bob',
        from: fromKey.charAt(0).toUpperCase() + fromKey.slice(1),
        fromKey,
        id: `m${(nextId++).toString().padStart(6, '0')}`,
        text: `hello ${nextId}`,
        ts: T0,
        ...over,
      };
    }

    async function queued(m: NewQueuedMessage, cap = NO_CAP): Promise<number> {
      const result = await store.enqueue(m, cap);
      if (result.status !== 'queued') throw new Error(`expected queued, got ${JSON.stringify(result)}`);
      return result.seq;
    }

    async function fetchAll(to: string): Promise<QueuedMessage[]> {
      return store.fetchQueue(to, -1, NO_CAP, 0);
    }

    function expectIncreasing(seqs: number[]): void {
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    }

    function account(key: string, over: Partial<Account> = {}): Account {
      return { key, name: key.toUpperCase(), passwordHash: `scrypt$hash-of-${key}`, created: T0, ...over };
    }

    /**
     * A session whose token hash is `tokenHash(label)`, created at T0 plus the label's trailing number, so that
     * a1, a2, a3 are in the order they would have signed in (`replaceSessions` keeps the newest).
     */
    function session(label: string, key: string, over: Partial<SessionRecord> = {}): SessionRecord {
      return { tokenHash: tokenHash(label), key, created: T0 + Number(/\d+$/.exec(label)?.[0] ?? 0), expires: T0 + 86_400_000, ...over };
    }

    /** The hashes of the labels, sorted: replaceSessions' result order is unspecified. */
    function hashes(...labels: string[]): string[] {
      return labels.map(tokenHash).sort();
    }

    describe('lifecycle', () => {
      it('reports its kind and answers ping while open', async () => {
        expect(typeof store.kind).toBe('string');
        expect(store.kind.length).toBeGreaterThan(0);
        expect(await store.ping()).toBe(true);
      });

      it('close is idempotent', async () => {
        await store.close();
        await store.close();
      });
    });

    describe('accounts', () => {
      it('creates an account and reads it back', async () => {
        const a = account('bob');
        expect(await store.createAccount(a)).toBe(true);
        expect(await store.getAccount('bob')).toEqual(a);
      });

      it('refuses a second account with the same key and keeps the first', async () => {
        expect(await store.createAccount(account('bob'))).toBe(true);
        expect(await store.createAccount(account('bob', { name: 'BoB', passwordHash: 'other' }))).toBe(false);
        expect(await store.getAccount('bob')).toEqual(account('bob'));
      });

      it('lets exactly one of many concurrent creations of one key win', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.createAccount(account('race', { passwordHash: `h${i}` }))),
        );
        expect(results.filter((r) => r)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(await store.getAccount('race')).toEqual(account('race', { passwordHash: `h${winner}` }));
      });

      it('returns null for a missing account', async () => {
        expect(await store.getAccount('nobody')).toBeNull();
      });

      it('uses keys exactly as given, whatever the script, and never matches a prefix', async () => {
        await store.createAccount(account('小明'));
        expect(await store.getAccount('小明')).toEqual(account('小明'));
        expect(await store.getAccount('小')).toBeNull();
        expect(await store.createAccount(account('小明x'))).toBe(true);
      });
    });

    describe('sessions', () => {
      const h = tokenHash;

      it('puts, gets and deletes a session', async () => {
        const s = session('h1', 'bob');
        await store.putSession(s);
        expect(await store.getSession(h('h1'))).toEqual(s);
        await store.deleteSession(h('h1'));
        expect(await store.getSession(h('h1'))).toBeNull();
      });

      it('returns null for an unknown session, and deleting one is harmless', async () => {
        expect(await store.getSession(h('nope'))).toBeNull();
        await store.deleteSession(h('nope'));
      });

      it('keeps the display name when one is given, and has none when not', async () => {
        const named = session('n1', '小明', { name: '小明' });
        const mixed = session('n2', 'bob', { name: 'BoB', replacedAt: T0 + 3 });
        const unnamed = session('n3', 'carol');
        for (const s of [named, mixed, unnamed]) await store.putSession(s);
        expect(await store.getSession(h('n1'))).toEqual(named);
        expect(await store.getSession(h('n2'))).toEqual(mixed);
        const got = await store.getSession(h('n3'));
        expect(got).toEqual(unnamed);
        expect(got).not.toHaveProperty('name');
      });

      it('keeps the name through replaceSessions and purges named sessions like any other', async () => {
        await store.putSession(session('a1', 'alice', { name: 'Alice', expires: T0 + 100 }));
        await store.putSession(session('a2', 'alice', { name: 'Alice' }));
        expect(await store.replaceSessions('alice', h('a2'), T0 + 5)).toEqual([h('a1')]);
        expect(await store.getSession(h('a1'))).toEqual(
          session('a1', 'alice', { name: 'Alice', expires: T0 + 100, replacedAt: T0 + 5 }),
        );
        expect(await store.purgeExpiredSessions(T0 + 101)).toBe(1);
        expect(await store.getSession(h('a1'))).toBeNull();
        expect(await store.getSession(h('a2'))).toEqual(session('a2', 'alice', { name: 'Alice' }));
      });

      it('putSession on an existing token hash replaces the record', async () => {
        await store.putSession(session('h1', 'bob', { expires: T0 + 100 }));
        await store.putSession(session('h1', 'bob', { expires: T0 + 10_000 }));
        expect(await store.getSession(h('h1'))).toEqual(session('h1', 'bob', { expires: T0 + 10_000 }));
        // The old expiry must not linger anywhere: a purge between the two expiries keeps the session.
        expect(await store.purgeExpiredSessions(T0 + 5_000)).toBe(0);
        expect(await store.getSession(h('h1'))).not.toBeNull();
      });

      it('putSession under another name moves the session to that name', async () => {
        await store.putSession(session('h1', 'bob', { name: 'Bob' }));
        await store.putSession(session('h1', 'carol'));
        expect(await store.getSession(h('h1'))).toEqual(session('h1', 'carol'));
        expect(await store.replaceSessions('bob', h('other'), T0)).toEqual([]);
        expect(await store.replaceSessions('carol', h('other'), T0)).toEqual([h('h1')]);
      });

      it('replaceSessions marks every other session of the name and returns their hashes', async () => {
        await store.putSession(session('a1', 'alice'));
        await store.putSession(session('a2', 'alice'));
        await store.putSession(session('a3', 'alice'));
        await store.putSession(session('b1', 'bob'));

        const replaced = await store.replaceSessions('alice', h('a3'), T0 + 5);
        expect([...replaced].sort()).toEqual(hashes('a1', 'a2'));
        expect(await store.getSession(h('a1'))).toEqual(session('a1', 'alice', { replacedAt: T0 + 5 }));
        expect(await store.getSession(h('a2'))).toEqual(session('a2', 'alice', { replacedAt: T0 + 5 }));
        expect(await store.getSession(h('a3'))).toEqual(session('a3', 'alice'));
        expect(await store.getSession(h('b1'))).toEqual(session('b1', 'bob'));
      });

      it('replaceSessions leaves already replaced sessions as they are', async () => {
        await store.putSession(session('a1', 'alice'));
        await store.putSession(session('a2', 'alice'));
        expect(await store.replaceSessions('alice', h('a2'), T0 + 5)).toEqual([h('a1')]);
        expect(await store.replaceSessions('alice', h('a2'), T0 + 9)).toEqual([]);
        expect((await store.getSession(h('a1')))?.replacedAt).toBe(T0 + 5);

        // A newer sign-in takes over from a2 only; a1 keeps its first replacement time.
        await store.putSession(session('a3', 'alice'));
        expect(await store.replaceSessions('alice', h('a3'), T0 + 20)).toEqual([h('a2')]);
        expect((await store.getSession(h('a1')))?.replacedAt).toBe(T0 + 5);
        expect((await store.getSession(h('a2')))?.replacedAt).toBe(T0 + 20);
      });

      it('replaceSessions keeps a newer live session and marks the one it was asked to keep (a sign-in that lost a race)', async () => {
        await store.putSession(session('a1', 'alice'));
        await store.putSession(session('a2', 'alice'));
        expect(await store.replaceSessions('alice', h('a1'), T0 + 5)).toEqual([h('a1')]);
        expect((await store.getSession(h('a1')))?.replacedAt).toBe(T0 + 5);
        expect((await store.getSession(h('a2')))?.replacedAt).toBeUndefined();
        expect(await store.replaceSessions('alice', h('a2'), T0 + 6)).toEqual([]);
      });

      it('racing replaceSessions of two sessions leave exactly the newer one live', async () => {
        await store.putSession(session('a1', 'alice'));
        await store.putSession(session('a2', 'alice'));
        const results = await Promise.all([store.replaceSessions('alice', h('a1'), T0 + 5), store.replaceSessions('alice', h('a2'), T0 + 5)]);
        expect(results.flat()).toEqual([h('a1')]);
        expect((await store.getSession(h('a1')))?.replacedAt).toBe(T0 + 5);
        expect((await store.getSession(h('a2')))?.replacedAt).toBeUndefined();
      });

      it('replaceSessions with no other session returns an empty list', async () => {
        expect(await store.replaceSessions('ghost', h('x'), T0)).toEqual([]);
        await store.putSession(session('only', 'carol'));
        expect(await store.replaceSessions('carol', h('only'), T0)).toEqual([]);
        expect((await store.getSession(h('only')))?.replacedAt).toBeUndefined();
      });

      it('replaceSessions does not see deleted sessions', async () => {
        await store.putSession(session('a1', 'alice'));
        await store.putSession(session('a2', 'alice'));
        await store.deleteSession(h('a1'));
        expect(await store.replaceSessions('alice', h('new'), T0)).toEqual([h('a2')]);
        expect(await store.getSession(h('a1'))).toBeNull();
      });

      it('concurrent replaceSessions calls report each session once', async () => {
        for (let i = 0; i < 10; i++) await store.putSession(session(`s${i}`, 'alice'));
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.replaceSessions('alice', h(`s${i}`), T0 + i)),
        );
        const all = results.flat();
        // Every session but the newest (s9) is replaced, none twice.
        expect(new Set(all).size).toBe(all.length);
        expect([...all].sort()).toEqual(hashes('s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7', 's8'));
        expect((await store.getSession(h('s9')))?.replacedAt).toBeUndefined();
      });

      it('purgeExpiredSessions deletes sessions that expired before now and counts them', async () => {
        await store.putSession(session('old1', 'alice', { expires: T0 + 100 }));
        await store.putSession(session('old2', 'bob', { expires: T0 + 150, replacedAt: T0 + 1 }));
        await store.putSession(session('edge', 'alice', { expires: T0 + 200 }));
        await store.putSession(session('new', 'alice', { expires: T0 + 300 }));

        expect(await store.purgeExpiredSessions(T0 + 200)).toBe(2);
        expect(await store.getSession(h('old1'))).toBeNull();
        expect(await store.getSession(h('old2'))).toBeNull();
        expect(await store.getSession(h('edge'))).not.toBeNull();
        expect(await store.getSession(h('new'))).not.toBeNull();
        expect(await store.purgeExpiredSessions(T0 + 200)).toBe(0);
        // Purged sessions are gone for replaceSessions too.
        expect([...(await store.replaceSessions('alice', h('x'), T0 + 250))].sort()).toEqual(hashes('edge', 'new'));
      });

      it('purgeExpiredSessions goes by time, whatever order the token hashes sort in', async () => {
        // Expiries that straddle byte boundaries (and odd ones the port does not rule out), one session per
        // expiry, written in reverse time order.
        const expiries = [-1, 0.5, T0 - 1, T0, T0 + 1, T0 + 255, T0 + 256, T0 + 65_536, 2 ** 41, 2 ** 52, 2 ** 53 - 1];
        for (const [i, expires] of [...expiries.entries()].reverse()) {
          await store.putSession(session(`e${i}`, `u${i}`, { expires }));
        }
        for (const [i, cut] of expiries.entries()) {
          expect(await store.purgeExpiredSessions(cut)).toBe(i === 0 ? 0 : 1);
          expect(await store.getSession(h(`e${i}`))).not.toBeNull();
          if (i > 0) expect(await store.getSession(h(`e${i - 1}`))).toBeNull();
        }
      });

      it('purgeExpiredSessions handles many expired sessions at once', async () => {
        await Promise.all(
          Array.from({ length: 1_200 }, (_, i) => store.putSession(session(`t${i}`, `u${i % 7}`, { expires: T0 + i }))),
        );
        expect(await store.purgeExpiredSessions(T0 + 1_100)).toBe(1_100);
        expect(await store.getSession(h('t1099'))).toBeNull();
        expect(await store.getSession(h('t1100'))).not.toBeNull();
      });
    });

    describe('queue order', () => {
      it('gives each recipient strictly increasing seqs and fetches in seq order', async () => {
        const sent = [msg(), msg({ fromKey: 'carol' }), msg(), msg({ ts: T0 - 1 })];
        const seqs: number[] = [];
        for (const m of sent) seqs.push(await queued(m));
        expectIncreasing(seqs);
        expect(await fetchAll('bob')).toEqual(sent.map((m, i) => ({ ...m, seq: seqs[i] })));
      });

      it('keeps queues of different recipients apart', async () => {
        const toBob = msg({ to: 'bob' });
        const toCarol = msg({ to: 'carol' });
        const bobSeq = await queued(toBob);
        const carolSeq = await queued(toCarol);
        expect(await fetchAll('bob')).toEqual([{ ...toBob, seq: bobSeq }]);
        expect(await fetchAll('carol')).toEqual([{ ...toCarol, seq: carolSeq }]);
        expect(await fetchAll('dave')).toEqual([]);
      });

      it('pages with afterSeq and limit', async () => {
        const seqs: number[] = [];
        for (let i = 0; i < 5; i++) seqs.push(await queued(msg()));

        const page1 = await store.fetchQueue('bob', -1, 2, 0);
        expect(page1.map((m) => m.seq)).toEqual(seqs.slice(0, 2));
        const page2 = await store.fetchQueue('bob', page1.at(-1)!.seq, 2, 0);
        expect(page2.map((m) => m.seq)).toEqual(seqs.slice(2, 4));
        const page3 = await store.fetchQueue('bob', page2.at(-1)!.seq, 2, 0);
        expect(page3.map((m) => m.seq)).toEqual(seqs.slice(4));
        expect(await store.fetchQueue('bob', page3.at(-1)!.seq, 2, 0)).toEqual([]);
        // afterSeq is exclusive, and need not be a seq that exists.
        expect((await store.fetchQueue('bob', seqs[2]! - 0.5, 10, 0)).map((m) => m.seq)).toEqual(seqs.slice(2));
      });

      it('fetching does not remove anything', async () => {
        await queued(msg());
        await store.fetchQueue('bob', -1, 10, 0);
        expect(await store.queueLength('bob')).toBe(1);
        expect(await fetchAll('bob')).toHaveLength(1);
      });

      it('keeps seqs increasing after the queue has been emptied', async () => {
        const first = await queued(msg());
        expect(await store.ackQueue('bob', [first])).toBe(1);
        const second = await queued(msg());
        expect(second).toBeGreaterThan(first);
      });

      it('stores text exactly, including non-ASCII and 16 KiB of it', async () => {
        // 24 bytes of UTF-8 per repeat: 16,368 bytes, just under the 16 KiB limit.
        const m = msg({ text: '小明 says héllo 👋\n'.repeat(682), from: '小明', fromKey: '小明' });
        const seq = await queued(m);
        expect(await store.findQueued('小明', m.id)).toEqual({ ...m, seq });
      });
    });

    describe('de-duplication by (fromKey, id)', () => {
      it('answers a resend with duplicate and the original seq, writing nothing', async () => {
        const m = msg();
        const seq = await queued(m);
        expect(await store.enqueue({ ...m, text: 'changed', ts: T0 + 9 }, NO_CAP)).toEqual({ status: 'duplicate', seq });
        expect(await store.queueLength('bob')).toBe(1);
        expect(await fetchAll('bob')).toEqual([{ ...m, seq }]);
      });

      it('is unique across the whole queue, also when a different recipient is named', async () => {
        const m = msg({ to: 'bob' });
        const seq = await queued(m);
        expect(await store.enqueue({ ...m, to: 'carol' }, NO_CAP)).toEqual({ status: 'duplicate', seq });
        expect(await store.queueLength('carol')).toBe(0);
        expect(await fetchAll('carol')).toEqual([]);
      });

      it('treats the same id from another sender as a different message', async () => {
        const m = msg({ fromKey: 'alice' });
        await queued(m);
        await queued({ ...m, fromKey: 'carol', from: 'Carol' });
        expect(await store.queueLength('bob')).toBe(2);
      });

      it('answers duplicate rather than full when the original fills the queue', async () => {
        const first = msg();
        const seq = await queued(first, 2);
        await queued(msg(), 2);
        expect(await store.enqueue(msg(), 2)).toEqual({ status: 'full' });
        expect(await store.enqueue(first, 2)).toEqual({ status: 'duplicate', seq });
      });

      it('stores exactly one of many concurrent sends of one message', async () => {
        const m = msg();
        const results = await Promise.all(Array.from({ length: 20 }, () => store.enqueue(m, NO_CAP)));
        const stored = results.filter((r) => r.status === 'queued');
        expect(stored).toHaveLength(1);
        const seq = (stored[0] as { seq: number }).seq;
        expect(results.filter((r) => r.status === 'duplicate')).toEqual(Array(19).fill({ status: 'duplicate', seq }));
        expect(await store.queueLength('bob')).toBe(1);
      });

      it('accepts the id again once the message has left the queue', async () => {
        const m = msg();
        const seq = await queued(m);
        await store.ackQueue('bob', [seq]);
        const again = await queued(m);
        expect(again).toBeGreaterThan(seq);
      });
    });

    describe('cap', () => {
      it('answers full at the cap and writes nothing', async () => {
        for (let i = 0; i < 3; i++) await queued(msg(), 3);
        const over = msg();
        expect(await store.enqueue(over, 3)).toEqual({ status: 'full' });
        expect(await store.queueLength('bob')).toBe(3);
        expect(await store.findQueued(over.fromKey, over.id)).toBeNull();
        // Refused, so not a duplicate later: it can be queued once there is room.
        const [oldest] = await fetchAll('bob');
        await store.ackQueue('bob', [oldest!.seq]);
        expect((await store.enqueue(over, 3)).status).toBe('queued');
      });

      it('counts per recipient', async () => {
        for (let i = 0; i < 2; i++) await queued(msg({ to: 'bob' }), 2);
        expect(await store.enqueue(msg({ to: 'bob' }), 2)).toEqual({ status: 'full' });
        expect((await store.enqueue(msg({ to: 'carol' }), 2)).status).toBe('queued');
      });

      it('holds under 4 to 12 concurrent enqueues to one recipient with cap 3, round after round', async () => {
        for (let n = 4; n <= 12; n++) {
          const to = `cap${n}`;
          const results = await Promise.all(Array.from({ length: n }, (_, i) => store.enqueue(msg({ to, fromKey: `s${i}` }), 3)));
          expect(results.filter((r) => r.status === 'queued')).toHaveLength(3);
          expect(await store.queueLength(to)).toBe(3);
          // Acks racing with the next enqueues: the cap still counts what is left.
          const [oldest] = await fetchAll(to);
          const after = await Promise.all([
            store.ackQueue(to, [oldest!.seq]),
            ...Array.from({ length: n }, (_, i) => store.enqueue(msg({ to, fromKey: `t${i}` }), 3)),
          ]);
          expect(after.slice(1).filter((r) => typeof r === 'object' && r.status === 'queued').length).toBeLessThanOrEqual(1);
          expect(await store.queueLength(to)).toBeLessThanOrEqual(3);
        }
      });

      it('is never exceeded by concurrent enqueues', async () => {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.enqueue(msg({ fromKey: `s${i % 5}` }), 10)),
        );
        expect(results.filter((r) => r.status === 'queued')).toHaveLength(10);
        expect(results.filter((r) => r.status === 'full')).toHaveLength(40);
        expect(await store.queueLength('bob')).toBe(10);
        expect(await fetchAll('bob')).toHaveLength(10);
      });
    });

    describe('ack', () => {
      it('deletes the given messages in bulk and keeps the rest in order', async () => {
        const seqs: number[] = [];
        for (let i = 0; i < 5; i++) seqs.push(await queued(msg()));
        expect(await store.ackQueue('bob', [seqs[0]!, seqs[2]!, seqs[4]!])).toBe(3);
        expect((await fetchAll('bob')).map((m) => m.seq)).toEqual([seqs[1], seqs[3]]);
        expect(await store.queueLength('bob')).toBe(2);
      });

      it('ignores unknown and repeated seqs', async () => {
        const a = await queued(msg());
        const b = await queued(msg());
        expect(await store.ackQueue('bob', [a, a, Math.max(a, b) + 1000])).toBe(1);
        expect(await store.ackQueue('bob', [a])).toBe(0);
        expect(await store.ackQueue('bob', [])).toBe(0);
        expect(await store.queueLength('bob')).toBe(1);
      });

      it("only deletes the named recipient's messages", async () => {
        const seq = await queued(msg({ to: 'bob' }));
        expect(await store.ackQueue('carol', [seq])).toBe(0);
        expect(await store.queueLength('bob')).toBe(1);
      });

      it('acked messages are no longer found', async () => {
        const m = msg();
        const seq = await queued(m);
        await store.ackQueue('bob', [seq]);
        expect(await store.findQueued(m.fromKey, m.id)).toBeNull();
        expect(await fetchAll('bob')).toEqual([]);
      });

      it('queueLength is 0 for a recipient with no queue', async () => {
        expect(await store.queueLength('nobody')).toBe(0);
      });
    });

    describe('findQueued', () => {
      it('finds a queued message by (fromKey, id) with its recipient and seq', async () => {
        const m = msg({ to: 'carol' });
        const seq = await queued(m);
        expect(await store.findQueued(m.fromKey, m.id)).toEqual({ ...m, seq });
      });

      it('returns null when nothing matches', async () => {
        const m = msg();
        await queued(m);
        expect(await store.findQueued(m.fromKey, 'other-id')).toBeNull();
        expect(await store.findQueued('someone-else', m.id)).toBeNull();
      });
    });

    describe('retention', () => {
      it('fetch skips messages older than notBefore, and limit counts what is returned', async () => {
        const seqs: number[] = [];
        for (const ts of [T0 + 100, T0 + 100, T0 + 300, T0 + 200, T0 + 400]) seqs.push(await queued(msg({ ts })));
        expect((await store.fetchQueue('bob', -1, 10, T0 + 200)).map((m) => m.seq)).toEqual(seqs.slice(2));
        expect((await store.fetchQueue('bob', -1, 1, T0 + 200)).map((m) => m.seq)).toEqual([seqs[2]]);
        expect((await store.fetchQueue('bob', seqs[2]!, 1, T0 + 200)).map((m) => m.seq)).toEqual([seqs[3]]);
        // Filtering is for reading only: the old messages are still queued.
        expect(await store.queueLength('bob')).toBe(5);
      });

      it('purgeExpiredMessages deletes messages with ts before the cut-off, for every recipient', async () => {
        const oldBob = msg({ to: 'bob', ts: T0 + 100 });
        const oldCarol = msg({ to: 'carol', ts: T0 + 199 });
        const edge = msg({ to: 'bob', ts: T0 + 200 });
        const fresh = msg({ to: 'carol', ts: T0 + 300 });
        for (const m of [oldBob, edge, oldCarol, fresh]) await queued(m);

        expect(await store.purgeExpiredMessages(T0 + 200)).toBe(2);
        expect((await fetchAll('bob')).map((m) => m.id)).toEqual([edge.id]);
        expect((await fetchAll('carol')).map((m) => m.id)).toEqual([fresh.id]);
        expect(await store.queueLength('bob')).toBe(1);
        expect(await store.queueLength('carol')).toBe(1);
        expect(await store.findQueued(oldBob.fromKey, oldBob.id)).toBeNull();
        expect(await store.purgeExpiredMessages(T0 + 200)).toBe(0);
      });

      it('purging frees room under the cap', async () => {
        await queued(msg({ ts: T0 }), 2);
        await queued(msg({ ts: T0 + 10 }), 2);
        expect(await store.enqueue(msg(), 2)).toEqual({ status: 'full' });
        await store.purgeExpiredMessages(T0 + 5);
        expect((await store.enqueue(msg(), 2)).status).toBe('queued');
      });

      it('purgeExpiredMessages handles many expired messages at once', async () => {
        await Promise.all(
          Array.from({ length: 1_200 }, (_, i) => store.enqueue(msg({ to: `r${i % 3}`, ts: T0 + i }), NO_CAP)),
        );
        expect(await store.purgeExpiredMessages(T0 + 1_150)).toBe(1_150);
        const left = [...(await fetchAll('r0')), ...(await fetchAll('r1')), ...(await fetchAll('r2'))];
        expect(left.map((m) => m.ts).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => T0 + 1_150 + i));
      });
    });

    describe('concurrent writers', () => {
      it('many concurrent senders to one recipient: distinct seqs, nothing lost, fetch in seq order', async () => {
        const senders = ['s1', 's2', 's3', 's4'];
        const all = senders.flatMap((fromKey) => Array.from({ length: 25 }, () => msg({ fromKey })));
        const results = await Promise.all(all.map((m) => store.enqueue(m, NO_CAP)));

        const seqs = results.map((r) => (r.status === 'queued' ? r.seq : Number.NaN));
        expect(seqs.every(Number.isInteger)).toBe(true);
        expect(new Set(seqs).size).toBe(all.length);

        const fetched = await fetchAll('bob');
        expectIncreasing(fetched.map((m) => m.seq));
        const bySeq = new Map(fetched.map((m) => [m.seq, m]));
        all.forEach((m, i) => expect(bySeq.get(seqs[i]!)).toEqual({ ...m, seq: seqs[i] }));
        expect(await store.queueLength('bob')).toBe(all.length);
      });

      it('a message accepted after another resolved gets a higher seq (acceptance order)', async () => {
        // Each sender waits for its own enqueue before the next one; the senders run side by side.
        const perSender = await Promise.all(
          ['s1', 's2', 's3'].map(async (fromKey) => {
            const seqs: number[] = [];
            for (let i = 0; i < 15; i++) seqs.push(await queued(msg({ fromKey })));
            return seqs;
          }),
        );
        for (const seqs of perSender) expectIncreasing(seqs);
        expect(new Set(perSender.flat()).size).toBe(45);
      });

      it('writers to several recipients at once keep every queue separate and complete', async () => {
        const all = Array.from({ length: 60 }, (_, i) => msg({ to: `r${i % 4}`, fromKey: `s${i % 3}` }));
        await Promise.all(all.map((m) => store.enqueue(m, NO_CAP)));
        for (let r = 0; r < 4; r++) {
          const fetched = await fetchAll(`r${r}`);
          expectIncreasing(fetched.map((m) => m.seq));
          expect(fetched.map((m) => m.id).sort()).toEqual(all.filter((m) => m.to === `r${r}`).map((m) => m.id).sort());
        }
      });

      it('acks racing with enqueues keep the count right', async () => {
        const first = await Promise.all(Array.from({ length: 20 }, () => queued(msg())));
        const more = Array.from({ length: 20 }, () => msg());
        await Promise.all([
          store.ackQueue('bob', first.slice(0, 10)),
          ...more.map((m) => store.enqueue(m, NO_CAP)),
          store.ackQueue('bob', first.slice(10)),
        ]);
        expect(await store.queueLength('bob')).toBe(20);
        expect((await fetchAll('bob')).map((m) => m.id).sort()).toEqual(more.map((m) => m.id).sort());
      });
    });

    describe('restarts and other processes', () => {
      it('restarts three times on existing data, keeping queue, sessions and order', async (ctx) => {
        if (!fixture.reopen) ctx.skip();
        await store.putSession(session('r', 'bob'));
        const seqs = [await queued(msg())];
        for (let restart = 0; restart < 3; restart++) {
          await store.close();
          store = await fixture.reopen!();
          expect(await store.getSession(tokenHash('r'))).toEqual(session('r', 'bob'));
          seqs.push(await queued(msg()));
          expect((await fetchAll('bob')).map((m) => m.seq)).toEqual(seqs);
        }
        expectIncreasing(seqs);
      });

      it('a second store opens on the data while the first is open, and both work', async (ctx) => {
        if (!fixture.reopen) ctx.skip();
        const second = await fixture.reopen!();
        const a = await queued(msg());
        const b = await second.enqueue(msg(), NO_CAP);
        expect(b.status).toBe('queued');
        expect((await second.fetchQueue('bob', -1, 10, 0)).map((m) => m.seq)).toEqual([a, (b as { seq: number }).seq]);
        // Two stores (as two processes would) racing to one recipient never pass the cap together.
        const results = await Promise.all(
          Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? store : second).enqueue(msg({ to: 'erin', fromKey: `s${i}` }), 5)),
        );
        expect(results.filter((r) => r.status === 'queued')).toHaveLength(5);
        expect(await second.queueLength('erin')).toBe(5);
      });

      it('two OS processes starting at once on existing data both open and work, twice', async (ctx) => {
        const spec = fixture.processStore;
        if (!spec) ctx.skip();
        await queued(msg());
        for (let round = 0; round < 2; round++) {
          const [p1, p2] = await Promise.all([
            runStoreChild(spec!, ['open', 'dora', `p1r${round}`]),
            runStoreChild(spec!, ['open', 'dora', `p2r${round}`]),
          ]);
          expect(p1).toEqual([expect.objectContaining({ opened: true, status: 'queued' })]);
          expect(p2).toEqual([expect.objectContaining({ opened: true, status: 'queued' })]);
        }
        expect(await store.queueLength('dora')).toBe(4);
      });

      it('acceptance order across two OS processes: distinct seqs, earlier-resolved lower, nothing lost', async (ctx) => {
        const spec = fixture.processStore;
        if (!spec) ctx.skip();
        const [p1, p2] = (await Promise.all([
          runStoreChild(spec!, ['enqueue', 'carol', 'p1', '40']),
          runStoreChild(spec!, ['enqueue', 'carol', 'p2', '40']),
        ])) as Array<Array<{ id: string; status: string; seq: number; start: number; end: number }>>;
        const all = [...p1!, ...p2!];
        expect(all.filter((r) => r.status === 'queued')).toHaveLength(80);
        expect(new Set(all.map((r) => r.seq)).size).toBe(80);
        for (const run of [p1!, p2!]) expectIncreasing(run.map((r) => r.seq));
        // By the machine's clock, with a millisecond to spare for clock reads in two processes.
        for (const x of p1!) {
          for (const y of p2!) {
            if (x.end + 1 < y.start) expect(x.seq).toBeLessThan(y.seq);
            if (y.end + 1 < x.start) expect(y.seq).toBeLessThan(x.seq);
          }
        }
        const fetched = await fetchAll('carol');
        expect(fetched.map((m) => m.id)).toEqual([...all].sort((a, b) => a.seq - b.seq).map((r) => r.id));
      });
    });

    describe('persistence', () => {
      it('keeps accounts, sessions and queued messages across close and reopen', async (ctx) => {
        if (!fixture.reopen) ctx.skip();
        const a = account('bob');
        const s = session('h1', 'bob', { name: 'Bob', replacedAt: T0 + 1 });
        const m1 = msg();
        const m2 = msg({ to: 'carol' });
        await store.createAccount(a);
        await store.putSession(s);
        const seq1 = await queued(m1);
        const seq2 = await queued(m2);
        await store.close();

        store = await fixture.reopen!();
        expect(await store.getAccount('bob')).toEqual(a);
        expect(await store.getSession(tokenHash('h1'))).toEqual(s);
        expect(await fetchAll('bob')).toEqual([{ ...m1, seq: seq1 }]);
        expect(await fetchAll('carol')).toEqual([{ ...m2, seq: seq2 }]);
        expect(await store.queueLength('bob')).toBe(1);
        // Uniqueness and ordering carry over too.
        expect(await store.createAccount(a)).toBe(false);
        expect(await store.enqueue(m1, NO_CAP)).toEqual({ status: 'duplicate', seq: seq1 });
        expect(await queued(msg())).toBeGreaterThan(seq1);
      });

      it('keeps the seq counter of an emptied queue across reopen', async (ctx) => {
        if (!fixture.reopen) ctx.skip();
        const seq = await queued(msg());
        await store.ackQueue('bob', [seq]);
        await store.close();
        store = await fixture.reopen!();
        expect(await queued(msg())).toBeGreaterThan(seq);
      });
    });

    // Port additions of issue 9, kept in their own block so they merge apart from changes to the cases above.
    describe('enqueueBatch (requeue of accepted messages)', () => {
      it('appends in the given order after what is queued, as one call', async () => {
        const first = await queued(msg());
        const batch = Array.from({ length: 50 }, (_, i) => msg({ fromKey: i % 2 ? 'alice' : 'carol' }));
        const results = await store.enqueueBatch('bob', batch);
        expect(results.map((r) => r.status)).toEqual(batch.map(() => 'queued'));
        const seqs = results.map((r) => (r.status === 'queued' ? r.seq : -1));
        expect(seqs[0]).toBeGreaterThan(first);
        expectIncreasing(seqs);
        const all = await fetchAll('bob');
        expect(all.map((m) => m.id)).toEqual([all[0]!.id, ...batch.map((m) => m.id)]);
        expect(await store.queueLength('bob')).toBe(51);
      });

      it('is never refused for the cap, and counts toward it afterwards', async () => {
        await queued(msg(), 2);
        const results = await store.enqueueBatch('bob', [msg(), msg(), msg()]);
        expect(results.every((r) => r.status === 'queued')).toBe(true);
        expect(await store.queueLength('bob')).toBe(4);
        expect(await store.enqueue(msg(), 4)).toEqual({ status: 'full' });
      });

      it('skips a (fromKey, id) already queued, reporting it as duplicate with its seq, and keeps the rest', async () => {
        const m = msg();
        const seq = await queued(m);
        const fresh = msg();
        const results = await store.enqueueBatch('bob', [{ ...m, text: 'again' }, fresh]);
        expect(results[0]).toEqual({ status: 'duplicate', seq });
        expect(results[1]!.status).toBe('queued');
        expect((await fetchAll('bob')).map((q) => q.id)).toEqual([m.id, fresh.id]);
      });

      it('an empty batch writes nothing', async () => {
        expect(await store.enqueueBatch('bob', [])).toEqual([]);
        expect(await store.queueLength('bob')).toBe(0);
      });

      it('a (fromKey, id) repeated within one batch is queued once; the repeat answers duplicate with its seq', async () => {
        const m = msg();
        const other = msg({ fromKey: 'carol' });
        const results = await store.enqueueBatch('bob', [m, other, { ...m, text: 'again' }]);
        expect(results[0]!.status).toBe('queued');
        expect(results[1]!.status).toBe('queued');
        const seq = results[0]!.status === 'queued' ? results[0]!.seq : -1;
        expect(results[2]).toEqual({ status: 'duplicate', seq });
        expect(await fetchAll('bob')).toEqual([
          { ...m, seq },
          { ...other, seq: (results[1] as { seq: number }).seq },
        ]);
      });

      it('concurrent batches and enqueues to one recipient: each batch keeps its order, every message is queued exactly once', async () => {
        await queued(msg());
        const senders = ['alice', 'carol', 'dave'];
        const batches = Array.from({ length: 6 }, (_, b) =>
          Array.from({ length: 40 }, (_, i) => msg({ fromKey: senders[(b + i) % senders.length]! })),
        );
        // The same messages put back twice at once (as two nodes could): each must still be queued once.
        batches[4]!.splice(10, 0, ...batches[0]!.slice(5, 15));
        batches[5]!.push(...batches[1]!.slice(30));
        const singles = Array.from({ length: 20 }, () => msg({ fromKey: 'erin' }));
        const [batchResults, singleResults] = await Promise.all([
          Promise.all(batches.map((b) => store.enqueueBatch('bob', b))),
          Promise.all(singles.map((m) => store.enqueue(m, NO_CAP))),
        ]);

        const all = await fetchAll('bob');
        const distinct = new Map([...batches.flat(), ...singles].map((m) => [m.id, m]));
        expect(all).toHaveLength(distinct.size + 1);
        expect(new Set(all.map((m) => m.id)).size).toBe(all.length);
        expect(await store.queueLength('bob')).toBe(all.length);
        const stored = new Map(all.map((m) => [m.id, m]));
        for (const m of distinct.values()) expect(stored.get(m.id)).toEqual({ ...m, seq: stored.get(m.id)!.seq });

        // Every answer names the seq the message is stored under; what a batch itself queued is in its order.
        for (const [b, batch] of batches.entries()) {
          const results = batchResults[b]!;
          expect(results).toHaveLength(batch.length);
          const own: number[] = [];
          for (const [i, r] of results.entries()) {
            expect(r.status).not.toBe('full');
            const seq = (r as { seq: number }).seq;
            expect(seq).toBe(stored.get(batch[i]!.id)!.seq);
            if (r.status === 'queued') own.push(seq);
          }
          expectIncreasing(own);
        }
        const repeated = new Set([...batches[0]!.slice(5, 15), ...batches[1]!.slice(30)].map((m) => m.id));
        const queuedAnswers = batchResults.flat().filter((r) => r.status === 'queued').length;
        expect(queuedAnswers).toBe(distinct.size - singles.length);
        expect(batches.flat().filter((m) => repeated.has(m.id))).toHaveLength(2 * repeated.size);
        for (const r of singleResults) expect(r.status).toBe('queued');
      });
    });

    describe('putReceipts / takeReceipts (receipts for an offline sender)', () => {
      it('keeps receipts per sender, once per id, and hands them back oldest first exactly once', async () => {
        await store.putReceipts('alice', [{ id: 'm2', to: 'Bob', at: T0 + 2 }, { id: 'm1', to: 'Bob', at: T0 + 1 }]);
        await store.putReceipts('alice', [{ id: 'm1', to: 'Bob', at: T0 + 1 }]);
        await store.putReceipts('carol', [{ id: 'c1', to: 'Bob', at: T0 }]);
        expect(await store.takeReceipts('alice', 100)).toEqual([{ id: 'm1', to: 'Bob', at: T0 + 1 }, { id: 'm2', to: 'Bob', at: T0 + 2 }]);
        expect(await store.takeReceipts('alice', 100)).toEqual([]);
        expect(await store.takeReceipts('carol', 100)).toEqual([{ id: 'c1', to: 'Bob', at: T0 }]);
      });

      it('survives a reopen', async () => {
        if (!fixture.reopen) return;
        await store.putReceipts('alice', [{ id: 'm1', to: 'Bob', at: T0 }]);
        await store.close();
        store = await fixture.reopen();
        expect(await store.takeReceipts('alice', 100)).toEqual([{ id: 'm1', to: 'Bob', at: T0 }]);
      });
    });

    describe('claimSkeleton (look-alike names)', () => {
      it('the first claim wins; the same key may claim again; another key learns the holder', async () => {
        expect(await store.claimSkeleton('bob', 'bob')).toBe('bob');
        expect(await store.claimSkeleton('bob', 'bob')).toBe('bob');
        expect(await store.claimSkeleton('bob', 'bоb')).toBe('bob');
        expect(await store.claimSkeleton('rnary', 'rnary')).toBe('rnary');
      });

      it('racing claims of one skeleton for different keys agree on one holder', async () => {
        const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
        const holders = await Promise.all(keys.map((k) => store.claimSkeleton('same', k)));
        expect(new Set(holders).size).toBe(1);
        expect(keys).toContain(holders[0]);
      });
    });
  });
}

/**
 * The usual factory body: a store made by `make` and opened, `reopen` opening another on the same data, and
 * `cleanup` closing every store it opened before `dispose` removes the data.
 */
export async function reopenableStore<S extends Store>(make: () => S, dispose: () => Promise<void>): Promise<{ store: S; reopen: () => Promise<S>; cleanup: () => Promise<void> }> {
  const opened: S[] = [];
  const open = async (): Promise<S> => {
    const store = make();
    opened.push(store);
    await store.open();
    return store;
  };
  return {
    store: await open(),
    reopen: open,
    cleanup: async () => {
      for (const store of opened) await store.close();
      await dispose();
    },
  };
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Runs test/support/store-child.ts with `args` and resolves with its JSON lines once it exits 0. */
function runStoreChild(spec: ProcessStoreSpec, args: string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/store-child.ts', ...args], {
      cwd: ROOT,
      // Only what the child needs: it must not pick up a MONGODB_URI or anything else from the test's env.
      env: { PATH: process.env.PATH ?? '', PARLEY_STORE: JSON.stringify(spec) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: unknown[] = [];
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(lines) : reject(new Error(`store child exited ${code}: ${stderr}`))));
  });
}

/**
 * The account-changes part of the contract (change password, end other sessions, delete an account with its
 * queue), registered next to the main suite by each adapter's test file with the same factory.
 */
export function defineAccountChangesContract(label: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Store contract, account changes: ${label}`, () => {
    let fixture: StoreFixture;
    let store: Store;
    beforeEach(async () => {
      fixture = await makeStore();
      store = fixture.store;
    });
    afterEach(() => fixture.cleanup());

    const account = (key: string): Account => ({ key, name: key, passwordHash: `hash-of-${key}`, created: T0 });
    const session = (label: string, key: string): SessionRecord => ({ tokenHash: tokenHash(label), key, name: key, created: T0, expires: T0 + 86_400_000 });
    const message = (to: string, id: string): NewQueuedMessage => ({ to, from: 'carol', fromKey: 'carol', id, text: `text ${id}`, ts: T0 });

    it('setPassword replaces the hash of an existing account only', async () => {
      await store.createAccount(account('alice'));
      expect(await store.setPassword('alice', 'new-hash')).toBe(true);
      expect(await store.getAccount('alice')).toEqual({ ...account('alice'), passwordHash: 'new-hash' });
      expect(await store.setPassword('nobody', 'x')).toBe(false);
      expect(await store.getAccount('nobody')).toBeNull();
    });

    it('deleteSessionsOf deletes every session of a name but the one kept, and no one else\'s', async () => {
      for (const [l, k] of [['a1', 'alice'], ['a2', 'alice'], ['a3', 'alice'], ['b1', 'bob']] as const) await store.putSession(session(l, k));
      expect((await store.deleteSessionsOf('alice', tokenHash('a2'))).sort()).toEqual([tokenHash('a1'), tokenHash('a3')].sort());
      expect(await store.getSession(tokenHash('a1'))).toBeNull();
      expect(await store.getSession(tokenHash('a3'))).toBeNull();
      expect(await store.getSession(tokenHash('a2'))).toEqual(session('a2', 'alice'));
      expect(await store.getSession(tokenHash('b1'))).toEqual(session('b1', 'bob'));
      expect(await store.deleteSessionsOf('alice')).toEqual([tokenHash('a2')]);
      expect(await store.getSession(tokenHash('a2'))).toBeNull();
      expect(await store.deleteSessionsOf('alice')).toEqual([]);
      // A deleted session is gone from the expiry purge too (nothing left to purge for alice).
      expect(await store.purgeExpiredSessions(T0 + 2 * 86_400_000)).toBe(1); // bob's
    });

    it('deleteAccount removes the account, its sessions and its queue, and leaves others alone', async () => {
      await store.createAccount(account('alice'));
      await store.createAccount(account('bob'));
      await store.putSession(session('a1', 'alice'));
      await store.putSession(session('b1', 'bob'));
      for (const id of ['m1', 'm2', 'm3']) expect((await store.enqueue(message('alice', id), NO_CAP)).status).toBe('queued');
      expect((await store.enqueue(message('bob', 'm4'), NO_CAP)).status).toBe('queued');

      expect(await store.deleteAccount('alice')).toBe(true);
      expect(await store.getAccount('alice')).toBeNull();
      expect(await store.getSession(tokenHash('a1'))).toBeNull();
      expect(await store.queueLength('alice')).toBe(0);
      expect(await store.fetchQueue('alice', -1, 10, 0)).toEqual([]);
      expect(await store.findQueued('carol', 'm1')).toBeNull();
      expect(await store.getAccount('bob')).not.toBeNull();
      expect(await store.getSession(tokenHash('b1'))).not.toBeNull();
      expect(await store.queueLength('bob')).toBe(1);
      expect(await store.deleteAccount('alice')).toBe(false);

      // The name can be registered again, and its new queue works (and starts within the cap).
      expect(await store.createAccount(account('alice'))).toBe(true);
      expect((await store.enqueue(message('alice', 'm1'), 1)).status).toBe('queued');
      expect((await store.enqueue(message('alice', 'm5'), 1)).status).toBe('full');
      expect((await store.fetchQueue('alice', -1, 10, 0)).map((m) => m.id)).toEqual(['m1']);
    });
  });
}
