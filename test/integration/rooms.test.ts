/**
 * Rooms on one server, on both stores, on real sockets: create, join, invitations, private rooms, removal,
 * leave, hand-over, recent history for newcomers, presence, and the code of every refusal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Op, type ErrorFrame } from '../../shared/protocol.ts';
import { Harness, STORE_KINDS, wsUrl } from '../support/harness.ts';
import { member, whenever, type Member } from '../support/room-member.ts';

for (const kind of STORE_KINDS) {
  describe(`rooms, ${kind} store`, () => {
    const h = new Harness(kind);
    afterEach(() => h.cleanup());

    /** A server and signed-in members, one after the other (sign-ins from one address share a budget). */
    async function setup(names: string[], env: Record<string, string> = {}) {
      const server = await h.server(env);
      const tokens = new Map<string, string>();
      for (const n of names) tokens.set(n, await h.account(server, n));
      const open = (n: string): Promise<Member> => member(h.rawSocket(wsUrl(server.url), tokens.get(n)!));
      const members = new Map<string, Member>();
      for (const n of names) members.set(n, await open(n));
      return { server, open, m: (n: string) => members.get(n)! };
    }

    const refused = (m: Member, code: ErrorFrame['code'], ref?: string): Promise<ErrorFrame> =>
      m.w.next(Op.Error, (e) => e.code === code && (ref === undefined || e.ref === ref));

    it('refuses with a code: bad names, taken names, unknown rooms, non-members, non-owners', async () => {
      const { m } = await setup(['alice', 'bob']);
      const alice = m('alice');
      const bob = m('bob');
      alice.w.send({ t: Op.RoomCreate, room: 'no spaces' });
      await refused(alice, 'BAD_NAME', 'no spaces');
      alice.w.send({ t: Op.RoomCreate, room: 'Garden' });
      expect(await alice.w.next(Op.RoomInfo)).toMatchObject({ room: 'Garden', owner: 'alice', private: false, members: [['alice', true]] });
      bob.w.send({ t: Op.RoomCreate, room: 'GARDEN' });
      await refused(bob, 'ROOM_EXISTS', 'GARDEN');
      bob.w.send({ t: Op.RoomJoin, room: 'nowhere' });
      await refused(bob, 'ROOM_UNKNOWN', 'nowhere');
      bob.w.send({ t: Op.Send, id: 'not-member-01', room: 'garden', text: 'hi' });
      await refused(bob, 'NOT_A_MEMBER', 'not-member-01');
      bob.w.send({ t: Op.RoomMembers, room: 'garden' });
      await refused(bob, 'NOT_A_MEMBER', 'garden');
      bob.w.send({ t: Op.RoomJoin, room: 'garden' });
      await bob.w.next(Op.RoomInfo);
      bob.w.send({ t: Op.RoomInvite, room: 'garden', name: 'alice' });
      await refused(bob, 'NOT_THE_OWNER', 'garden');
      bob.w.send({ t: Op.RoomRemove, room: 'garden', name: 'alice' });
      await refused(bob, 'NOT_THE_OWNER', 'garden');
      bob.w.send({ t: Op.RoomOwner, room: 'garden', name: 'bob' });
      await refused(bob, 'NOT_THE_OWNER', 'garden');
      alice.w.send({ t: Op.RoomLeave, room: 'garden' });
      await refused(alice, 'OWNER_CANNOT_LEAVE', 'garden');
      alice.w.send({ t: Op.RoomRemove, room: 'garden', name: 'alice' });
      await refused(alice, 'OWNER_CANNOT_LEAVE', 'garden');
      alice.w.send({ t: Op.RoomRemove, room: 'garden', name: 'carol' });
      await refused(alice, 'NOT_A_MEMBER', 'garden');
      alice.w.send({ t: Op.RoomInvite, room: 'garden', name: 'nobody' });
      await refused(alice, 'UNKNOWN_CONTACT', 'garden');
      alice.w.send({ t: Op.RoomWho, room: 'garden', id: 'never-sent-1' });
      await refused(alice, 'MESSAGE_UNKNOWN', 'never-sent-1');
      alice.w.send({ t: Op.Send, id: 'both-addrs-1', to: 'bob', room: 'garden', text: 'hi' });
      await refused(alice, 'BAD_FRAME', 'both-addrs-1');
      alice.w.send({ t: Op.RoomJoin, room: 42 as unknown as string });
      await refused(alice, 'BAD_FRAME');
      // Nothing refused reached the room.
      expect(bob.texts('garden')).toEqual([]);
    });

    it('private rooms admit invited names only; the list shows public rooms only', async () => {
      const { m } = await setup(['alice', 'bob', 'carol']);
      const [alice, bob, carol] = [m('alice'), m('bob'), m('carol')];
      alice.w.send({ t: Op.RoomCreate, room: 'Secret', private: true });
      await alice.w.next(Op.RoomInfo);
      alice.w.send({ t: Op.RoomCreate, room: 'Open' });
      await alice.w.next(Op.RoomInfo, (r) => r.room === 'Open');
      carol.w.send({ t: Op.RoomList });
      expect((await carol.w.next(Op.RoomListed)).rooms).toEqual([{ room: 'Open', owner: 'alice' }]);
      carol.w.send({ t: Op.RoomJoin, room: 'secret' });
      await refused(carol, 'NOT_INVITED', 'secret');
      carol.w.send({ t: Op.Send, id: 'sneak-in-001', room: 'secret', text: 'let me in' });
      await refused(carol, 'NOT_A_MEMBER', 'sneak-in-001');
      alice.w.send({ t: Op.RoomInvite, room: 'secret', name: 'Bob' });
      expect(await bob.w.next(Op.RoomInvited)).toEqual({ t: Op.RoomInvited, room: 'Secret', by: 'alice' });
      bob.w.send({ t: Op.RoomJoin, room: 'secret' });
      expect((await bob.w.next(Op.RoomInfo)).members).toEqual([['alice', true], ['bob', true]]);
      alice.w.send({ t: Op.Send, id: 'secret-msg-01', room: 'Secret', text: 'just us' });
      await whenever(bob, () => bob.texts('Secret').length === 1);
      expect(bob.texts('Secret')[0]).toMatchObject({ id: 'secret-msg-01', from: 'alice', text: 'just us' });
      expect(carol.got).toEqual([]);
    });

    it('invitations made while the invitee was away reach it at sign-in, with who invited, until it joins', async () => {
      const { server, m } = await setup(['alice']);
      const alice = m('alice');
      const bobToken = await h.account(server, 'bob');
      const infos = (): number => alice.w.frames.filter((f) => f.t === Op.RoomInfo).length;
      for (const room of ['Attic', 'Secret']) {
        alice.w.send({ t: Op.RoomCreate, room, private: true });
        await alice.w.next(Op.RoomInfo, (r) => r.room === room);
      }
      for (const room of ['attic', 'secret']) {
        const before = infos();
        alice.w.send({ t: Op.RoomInvite, room, name: 'bob' });
        await whenever(alice, () => infos() > before); // answered once the invitation is stored
      }
      const bob = await member(h.rawSocket(wsUrl(server.url), bobToken));
      expect(await bob.w.next(Op.RoomInvited, (i) => i.room === 'Secret')).toEqual({ t: Op.RoomInvited, room: 'Secret', by: 'alice' });
      expect(await bob.w.next(Op.RoomInvited, (i) => i.room === 'Attic')).toEqual({ t: Op.RoomInvited, room: 'Attic', by: 'alice' });
      bob.w.send({ t: Op.RoomJoin, room: 'secret' });
      expect((await bob.w.next(Op.RoomInfo)).members).toEqual([['alice', true], ['bob', true]]);
      alice.w.send({ t: Op.Send, id: 'for-invitee1', room: 'secret', text: 'welcome' });
      await whenever(bob, () => bob.texts('Secret').length === 1);
      // Joined, Secret's invitation is over; Attic's is still told at the next sign-in.
      bob.w.ws.terminate();
      const again = await member(h.rawSocket(wsUrl(server.url), bobToken));
      await again.w.next(Op.RoomInvited, (i) => i.room === 'Attic');
      // Invitations are sent together: whatever answers a later request comes after all of them.
      again.w.send({ t: Op.RoomList });
      await again.w.next(Op.RoomListed);
      expect(again.w.frames.filter((f) => f.t === Op.RoomInvited)).toEqual([{ t: Op.RoomInvited, room: 'Attic', by: 'alice' }]);
      expect(again.w.frames.filter((f) => f.t === Op.RoomInfo).map((f) => f.room)).toEqual(['Secret']);
    });

    it('a removed member gets nothing after its removal; leaving works; lines mark both; hand-over moves the powers', async () => {
      const { m, open } = await setup(['alice', 'bob', 'carol']);
      const [alice, bob, carol] = [m('alice'), m('bob'), m('carol')];
      alice.w.send({ t: Op.RoomCreate, room: 'Club' });
      await alice.w.next(Op.RoomInfo);
      for (const x of [bob, carol]) {
        x.w.send({ t: Op.RoomJoin, room: 'club' });
        await x.w.next(Op.RoomInfo);
      }
      alice.w.send({ t: Op.Send, id: 'before-remove', room: 'club', text: 'one' });
      await whenever(bob, () => bob.texts('Club').length === 1);
      alice.w.send({ t: Op.RoomRemove, room: 'club', name: 'bob' });
      expect(await bob.w.next(Op.RoomGone)).toEqual({ t: Op.RoomGone, room: 'Club', reason: 'removed' });
      alice.w.send({ t: Op.Send, id: 'after-remove', room: 'club', text: 'two' });
      await whenever(carol, () => carol.texts('Club').length === 2);
      bob.w.send({ t: Op.Send, id: 'removed-send', room: 'club', text: 'me?' });
      await refused(bob, 'NOT_A_MEMBER', 'removed-send');
      expect(bob.texts('Club').map((x) => x.id)).toEqual(['before-remove']);
      expect(carol.got.filter((x) => x.line !== undefined).map((x) => [x.line, x.from])).toEqual([
        ['created', 'alice'], ['joined', 'bob'], ['joined', 'carol'], ['removed', 'bob'],
      ]);
      // The removed member, signed in again, is in no room.
      bob.w.ws.terminate();
      const bobAgain = await open('bob');
      alice.w.send({ t: Op.RoomOwner, room: 'club', name: 'carol' });
      expect((await alice.w.next(Op.RoomInfo, (r) => r.owner === 'carol')).owner).toBe('carol');
      alice.w.send({ t: Op.RoomInvite, room: 'club', name: 'bob' });
      await refused(alice, 'NOT_THE_OWNER', 'club');
      alice.w.send({ t: Op.RoomLeave, room: 'club' });
      expect(await alice.w.next(Op.RoomGone)).toEqual({ t: Op.RoomGone, room: 'Club', reason: 'left' });
      await whenever(carol, () => carol.got.some((x) => x.line === 'left'));
      carol.w.send({ t: Op.Send, id: 'after-leave1', room: 'club', text: 'three' });
      await whenever(carol, () => carol.texts('Club').length === 3);
      carol.w.send({ t: Op.RoomMembers, room: 'club' });
      expect((await carol.w.next(Op.RoomInfo, (r) => r.members.length === 1)).members).toEqual([['carol', true]]);
      expect(alice.texts('Club').map((x) => x.id)).toEqual(['before-remove', 'after-remove']);
      expect(carol.got.filter((x) => x.line !== undefined).map((x) => [x.line, x.from])).toEqual([
        ['created', 'alice'], ['joined', 'bob'], ['joined', 'carol'], ['removed', 'bob'], ['owner', 'carol'], ['left', 'alice'],
      ]);
      expect(bobAgain.got).toEqual([]);
      expect(bobAgain.w.frames.some((f) => f.t === Op.RoomInfo)).toBe(false);
    });

    it('a newcomer gets the last ROOM_HISTORY entries, then its own joined line; members see presence', async () => {
      const { m, open } = await setup(['alice', 'bob', 'dave'], { ROOM_HISTORY: '5' });
      const [alice, bob] = [m('alice'), m('bob')];
      alice.w.send({ t: Op.RoomCreate, room: 'Hall' });
      await alice.w.next(Op.RoomInfo);
      for (let i = 0; i < 8; i++) alice.w.send({ t: Op.Send, id: `history-${i}0000`, room: 'Hall', text: `old ${i}` });
      await whenever(alice, () => alice.texts('Hall').length === 8);
      const before = alice.got.map((x) => x.id);
      bob.w.send({ t: Op.RoomJoin, room: 'hall' });
      await whenever(bob, () => bob.got.some((x) => x.line === 'joined'));
      expect(bob.got.map((x) => x.id).slice(0, 5)).toEqual(before.slice(-5));
      expect(bob.got[5]).toMatchObject({ line: 'joined', from: 'bob', text: '' });
      expect(bob.got[0]!.queued).toBe(true);
      expect(await alice.w.next(Op.RoomPresence, (p) => p.name === 'bob')).toMatchObject({ room: 'Hall', online: true });
      // Presence: bob goes away and comes back; alice sees both, and bob's rooms come back with him.
      bob.w.ws.terminate();
      await alice.w.next(Op.RoomPresence, (p) => p.name === 'bob' && !p.online);
      alice.w.send({ t: Op.Send, id: 'while-away-01', room: 'Hall', text: 'you missed this' });
      await whenever(alice, () => alice.receipts.some((r) => r[0] === 'while-away-01'));
      const again = await open('bob');
      expect(await again.w.next(Op.RoomInfo)).toMatchObject({ room: 'Hall', members: [['alice', true], ['bob', true]] });
      await whenever(again, () => again.texts('Hall').length === 1);
      expect(again.texts('Hall')[0]).toMatchObject({ id: 'while-away-01', queued: true });
      await whenever(alice, () => alice.w.frames.filter((f) => f.t === Op.RoomPresence && f.name === 'bob' && f.online).length === 2);
      // Delivered to 1 of 1 once bob acknowledged it; who: bob (dave is no member at all).
      await whenever(alice, () => alice.receipts.some((r) => r[0] === 'while-away-01' && r[2] === 1 && r[3] === 1));
      alice.w.send({ t: Op.RoomWho, room: 'hall', id: 'while-away-01' });
      expect(await alice.w.next(Op.RoomWhoIs)).toEqual({ t: Op.RoomWhoIs, room: 'Hall', id: 'while-away-01', delivered: ['bob'], pending: [] });
    });

    it('refuses joins past ROOM_MEMBERS with ROOM_FULL', async () => {
      const { m } = await setup(['alice', 'bob', 'carol'], { ROOM_MEMBERS: '2' });
      m('alice').w.send({ t: Op.RoomCreate, room: 'Tiny' });
      await m('alice').w.next(Op.RoomInfo);
      m('bob').w.send({ t: Op.RoomJoin, room: 'tiny' });
      await m('bob').w.next(Op.RoomInfo);
      m('carol').w.send({ t: Op.RoomJoin, room: 'tiny' });
      await refused(m('carol'), 'ROOM_FULL', 'tiny');
      m('alice').w.send({ t: Op.RoomInvite, room: 'tiny', name: 'carol' });
      await refused(m('alice'), 'ROOM_FULL', 'tiny');
    });

    it('refuses a send past the log cap (QUEUE_CAP) with QUEUE_FULL and stores nothing for it', async () => {
      const { m } = await setup(['alice', 'bob'], { QUEUE_CAP: '5', ROOM_HISTORY: '0' });
      const [alice, bob] = [m('alice'), m('bob')];
      alice.w.send({ t: Op.RoomCreate, room: 'Busy' });
      await alice.w.next(Op.RoomInfo);
      bob.w.send({ t: Op.RoomJoin, room: 'busy' });
      await bob.w.next(Op.RoomInfo);
      // The log holds the created and joined lines and, with a cap of 5, three messages while bob is away.
      bob.w.ws.terminate();
      await alice.w.next(Op.RoomPresence, (p) => !p.online);
      for (let i = 0; i < 3; i++) alice.w.send({ t: Op.Send, id: `capped-${i}00000`, room: 'busy', text: `m${i}` });
      await whenever(alice, () => alice.receipts.length >= 3);
      alice.w.send({ t: Op.Send, id: 'capped-over01', room: 'busy', text: 'one too many' });
      await refused(alice, 'QUEUE_FULL', 'capped-over01');
    });
  });
}
