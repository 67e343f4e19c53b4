/**
 * The room part of the Store contract (server/core/room-store.ts): what every adapter's `store.rooms` must do.
 * Registered by each adapter's integration test beside `defineStoreContract`, with the same fixtures.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewRoomEntry, RoomRecord } from '../../server/core/room-store.ts';
import type { Store } from '../../server/core/store.ts';
import type { StoreFixture } from './store.contract.ts';

const T0 = 1_700_000_000_000;
const NO_CAP = 1_000_000;

export function defineRoomStoreContract(label: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Room store contract: ${label}`, () => {
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

    function room(over: Partial<RoomRecord> = {}): RoomRecord {
      return { key: 'lobby', name: 'Lobby', ownerKey: 'alice', owner: 'Alice', private: false, created: T0, ...over };
    }
    function entry(over: Partial<NewRoomEntry> = {}): NewRoomEntry {
      const fromKey = over.fromKey ?? 'alice';
      return { room: 'lobby', from: fromKey.toUpperCase(), fromKey, id: `msg${String(++nextId).padStart(8, '0')}`, text: `text ${nextId}`, ts: T0 + nextId, ...over };
    }
    async function appendAll(n: number, over: Partial<NewRoomEntry> = {}): Promise<number[]> {
      const seqs: number[] = [];
      for (let i = 0; i < n; i++) {
        const r = await store.rooms.append(entry(over), NO_CAP);
        if (r.status !== 'stored') throw new Error(`append ${i}: ${r.status}`);
        seqs.push(r.seq);
      }
      return seqs;
    }

    it('creates a room once, with its owner as the first member, and reads it back', async () => {
      expect(await store.rooms.createRoom(room(), T0)).toBe(true);
      expect(await store.rooms.createRoom(room({ name: 'LOBBY', ownerKey: 'bob', owner: 'Bob' }), T0)).toBe(false);
      expect(await store.rooms.getRoom('lobby')).toEqual(room());
      expect(await store.rooms.getRoom('nowhere')).toBeNull();
      expect(await store.rooms.members('lobby')).toEqual([{ key: 'alice', name: 'Alice', cursor: 0, joined: T0 }]);
      expect(await store.rooms.roomsOf('alice')).toEqual(['lobby']);
    });

    it('lists public rooms only, and hands ownership over', async () => {
      await store.rooms.createRoom(room(), T0);
      await store.rooms.createRoom(room({ key: 'secret', name: 'Secret', private: true }), T0);
      await store.rooms.createRoom(room({ key: 'attic', name: 'Attic' }), T0);
      expect((await store.rooms.listPublicRooms(10)).map((r) => r.key)).toEqual(['attic', 'lobby']);
      expect(await store.rooms.listPublicRooms(1)).toHaveLength(1);
      expect(await store.rooms.setRoomOwner('lobby', 'bob', 'Bob')).toBe(true);
      expect(await store.rooms.setRoomOwner('nowhere', 'bob', 'Bob')).toBe(false);
      expect(await store.rooms.getRoom('lobby')).toMatchObject({ ownerKey: 'bob', owner: 'Bob' });
    });

    it('adds members up to the limit, once each; invitations are consumed by joining; removal is per member', async () => {
      await store.rooms.createRoom(room(), T0);
      await store.rooms.invite('lobby', 'bob', T0, 'Alice');
      expect(await store.rooms.isInvited('lobby', 'bob')).toBe(true);
      expect(await store.rooms.isInvited('lobby', 'carol')).toBe(false);
      expect(await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 7, T0 + 1, 3)).toBe('added');
      expect(await store.rooms.isInvited('lobby', 'bob')).toBe(false);
      expect(await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0 + 2, 3)).toBe('member');
      expect(await store.rooms.addMember('lobby', { key: 'carol', name: 'Carol' }, 0, T0 + 3, 3)).toBe('added');
      expect(await store.rooms.addMember('lobby', { key: 'dave', name: 'Dave' }, 0, T0 + 4, 3)).toBe('full');
      expect((await store.rooms.members('lobby')).map((m) => [m.key, m.cursor])).toEqual([['alice', 0], ['bob', 7], ['carol', 0]]);
      expect(await store.rooms.removeMember('lobby', 'bob')).toBe(true);
      expect(await store.rooms.removeMember('lobby', 'bob')).toBe(false);
      expect(await store.rooms.roomsOf('bob')).toEqual([]);
      expect(await store.rooms.addMember('lobby', { key: 'dave', name: 'Dave' }, 0, T0 + 5, 3)).toBe('added');
    });

    it('lists an invitee\'s invitations, most recent first, with who invited, until it joins', async () => {
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([]);
      for (const key of ['lobby', 'attic', 'secret']) await store.rooms.createRoom(room({ key, name: key.toUpperCase() }), T0);
      await store.rooms.invite('lobby', 'bob', T0 + 1, 'Alice');
      await store.rooms.invite('secret', 'bob', T0 + 3, 'Alice');
      await store.rooms.invite('attic', 'bob', T0 + 2, 'Alice');
      // Names that share a prefix with bob's, or that bob's is a prefix of, are other invitees.
      await store.rooms.invite('lobby', 'bo', T0 + 4, 'Alice');
      await store.rooms.invite('lobby', 'bobby', T0 + 5, 'Alice');
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([
        { room: 'secret', at: T0 + 3, by: 'Alice' },
        { room: 'attic', at: T0 + 2, by: 'Alice' },
        { room: 'lobby', at: T0 + 1, by: 'Alice' },
      ]);
      expect((await store.rooms.invitesOf('bob', 2)).map((i) => i.room)).toEqual(['secret', 'attic']);
      expect(await store.rooms.invitesOf('bob', 0)).toEqual([]);
      expect(await store.rooms.invitesOf('bo', 10)).toEqual([{ room: 'lobby', at: T0 + 4, by: 'Alice' }]);
      // Inviting again replaces the time and the inviter; there is still one invitation.
      await store.rooms.invite('attic', 'bob', T0 + 6, 'Carol');
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([
        { room: 'attic', at: T0 + 6, by: 'Carol' },
        { room: 'secret', at: T0 + 3, by: 'Alice' },
        { room: 'lobby', at: T0 + 1, by: 'Alice' },
      ]);
      // Joining ends it; the same room's invitations of others stay.
      expect(await store.rooms.addMember('attic', { key: 'bob', name: 'Bob' }, 0, T0 + 7, 10)).toBe('added');
      expect(await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0 + 8, 10)).toBe('added');
      expect(await store.rooms.invitesOf('bob', 10)).toEqual([{ room: 'secret', at: T0 + 3, by: 'Alice' }]);
      expect((await store.rooms.invitesOf('bobby', 10)).map((i) => i.room)).toEqual(['lobby']);
    });

    it('appends in seq order per room, de-duplicates (room, sender, id), and keeps rooms apart', async () => {
      await store.rooms.createRoom(room(), T0);
      const seqs = await appendAll(5);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
      const again = entry({ id: 'fixedid01' });
      const first = await store.rooms.append(again, NO_CAP);
      expect(first.status).toBe('stored');
      expect(await store.rooms.append({ ...again, text: 'changed' }, NO_CAP)).toEqual({ status: 'duplicate', seq: (first as { seq: number }).seq });
      // The same id from another sender, or in another room, is another message.
      expect((await store.rooms.append({ ...again, fromKey: 'bob', from: 'Bob' }, NO_CAP)).status).toBe('stored');
      expect((await store.rooms.append({ ...again, room: 'attic' }, NO_CAP)).status).toBe('stored');
      const log = await store.rooms.fetchRoom('lobby', 0, 100, 0);
      expect(log.map((e) => e.seq)).toEqual([...log.map((e) => e.seq)].sort((a, b) => a - b));
      expect(log).toHaveLength(7);
      expect(log[5]).toMatchObject({ room: 'lobby', fromKey: 'alice', id: 'fixedid01', text: again.text, ts: again.ts });
      expect(await store.rooms.fetchRoom('attic', 0, 100, 0)).toHaveLength(1);
      expect(await store.rooms.roomLogLength('lobby')).toBe(7);
    });

    it('keeps system lines with their kind, and fetches after a seq, with a limit and a time floor', async () => {
      await store.rooms.createRoom(room(), T0);
      await store.rooms.append(entry({ fromKey: 'bob', from: 'Bob', text: '', line: 'joined' }), NO_CAP);
      const seqs = await appendAll(4);
      const all = await store.rooms.fetchRoom('lobby', 0, 100, 0);
      expect(all[0]).toMatchObject({ line: 'joined', from: 'Bob', text: '' });
      expect(all[1]!.line).toBeUndefined();
      expect((await store.rooms.fetchRoom('lobby', seqs[1]!, 100, 0)).map((e) => e.seq)).toEqual(seqs.slice(2));
      expect((await store.rooms.fetchRoom('lobby', 0, 2, 0)).map((e) => e.seq)).toEqual([all[0]!.seq, seqs[0]]);
      expect(await store.rooms.fetchRoom('lobby', 0, 100, all[3]!.ts)).toHaveLength(2);
      expect(await store.rooms.fetchRoom('lobby', 0, 0, 0)).toEqual([]);
    });

    it('refuses an append past the cap (the log length) and stores nothing for it', async () => {
      await store.rooms.createRoom(room(), T0);
      await appendAll(3);
      expect(await store.rooms.append(entry(), 3)).toEqual({ status: 'full' });
      expect(await store.rooms.roomLogLength('lobby')).toBe(3);
      // A resend of a stored message is still answered as a duplicate at the cap.
      const [first] = await store.rooms.fetchRoom('lobby', 0, 1, 0);
      expect(await store.rooms.append({ ...entry(), id: first!.id }, 3)).toEqual({ status: 'duplicate', seq: first!.seq });
    });

    it('gives newcomers the start of the recent history', async () => {
      await store.rooms.createRoom(room(), T0);
      expect(await store.rooms.historyStart('lobby', 200, 0)).toBe(0);
      const seqs = await appendAll(10);
      expect(await store.rooms.historyStart('lobby', 3, 0)).toBe(seqs[7]! - 1);
      expect(await store.rooms.historyStart('lobby', 200, 0)).toBe(seqs[0]! - 1);
      expect(await store.rooms.historyStart('lobby', 0, 0)).toBe(seqs[9]);
      const log = await store.rooms.fetchRoom('lobby', 0, 100, 0);
      // Entries older than the retention floor are not history.
      expect(await store.rooms.historyStart('lobby', 200, log[8]!.ts)).toBe(seqs[8]! - 1);
    });

    it('moves cursors up only, and trims what every member has passed except the recent history', async () => {
      await store.rooms.createRoom(room(), T0);
      await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0, 10);
      const seqs = await appendAll(10);
      await store.rooms.advanceCursor('lobby', 'alice', seqs[8]!);
      await store.rooms.advanceCursor('lobby', 'alice', seqs[2]!);
      await store.rooms.advanceCursor('lobby', 'bob', seqs[5]!);
      await store.rooms.advanceCursor('lobby', 'nobody', seqs[9]!);
      expect((await store.rooms.members('lobby')).map((m) => [m.key, m.cursor])).toEqual([['alice', seqs[8]], ['bob', seqs[5]]]);
      // Bob has passed seqs[0..5]; the last 6 entries are kept as history: seqs[0..3] go.
      expect(await store.rooms.trimRoom('lobby', 6)).toBe(4);
      expect((await store.rooms.fetchRoom('lobby', 0, 100, 0)).map((e) => e.seq)).toEqual(seqs.slice(4));
      // Nothing Bob has not acknowledged goes, whatever the history setting.
      expect(await store.rooms.trimRoom('lobby', 0)).toBe(2);
      expect((await store.rooms.fetchRoom('lobby', 0, 100, 0)).map((e) => e.seq)).toEqual(seqs.slice(6));
      expect(await store.rooms.roomLogLength('lobby')).toBe(4);
      // Seqs never go back after a trim.
      const next = await store.rooms.append(entry(), NO_CAP);
      expect((next as { seq: number }).seq).toBeGreaterThan(seqs[9]!);
    });

    it('a member removed and added again starts from the cursor it is given', async () => {
      await store.rooms.createRoom(room(), T0);
      await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0, 10);
      const seqs = await appendAll(4);
      await store.rooms.advanceCursor('lobby', 'bob', seqs[3]!);
      await store.rooms.removeMember('lobby', 'bob');
      await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, seqs[1]!, T0 + 1, 10);
      expect((await store.rooms.members('lobby')).find((m) => m.key === 'bob')?.cursor).toBe(seqs[1]);
    });

    it('purges entries past retention', async () => {
      await store.rooms.createRoom(room(), T0);
      await appendAll(5);
      const log = await store.rooms.fetchRoom('lobby', 0, 100, 0);
      expect(await store.rooms.purgeExpiredRoomEntries(log[3]!.ts)).toBe(3);
      expect((await store.rooms.fetchRoom('lobby', 0, 100, 0)).map((e) => e.id)).toEqual(log.slice(3).map((e) => e.id));
      expect(await store.rooms.roomLogLength('lobby')).toBe(2);
    });

    it('keeps rooms, members, cursors and the log across a reopen', async ({ skip }) => {
      if (!fixture.reopen) skip();
      await store.rooms.createRoom(room({ private: true }), T0);
      await store.rooms.addMember('lobby', { key: 'bob', name: 'Bob' }, 0, T0, 10);
      await store.rooms.invite('lobby', 'carol', T0, 'Alice');
      const seqs = await appendAll(3);
      await store.rooms.advanceCursor('lobby', 'bob', seqs[1]!);
      await store.close();
      const again = await fixture.reopen!();
      expect(await again.rooms.getRoom('lobby')).toEqual(room({ private: true }));
      expect((await again.rooms.members('lobby')).map((m) => [m.key, m.cursor])).toEqual([['alice', 0], ['bob', seqs[1]]]);
      expect(await again.rooms.isInvited('lobby', 'carol')).toBe(true);
      expect(await again.rooms.invitesOf('carol', 10)).toEqual([{ room: 'lobby', at: T0, by: 'Alice' }]);
      expect((await again.rooms.fetchRoom('lobby', 0, 10, 0)).map((e) => e.seq)).toEqual(seqs);
      expect(((await again.rooms.append(entry(), NO_CAP)) as { seq: number }).seq).toBeGreaterThan(seqs[2]!);
    });
  });
}
