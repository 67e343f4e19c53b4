/** The codec's room additions: `send` to a room, room frames, and room messages keeping their fields. */
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeClientFrame, decodeServerFrame, encodeFrame, ProtocolError } from '../../shared/codec.ts';
import { Op } from '../../shared/protocol.ts';

const packr = new Packr({ useRecords: false });
const decode = (o: Record<string, unknown>) => decodeClientFrame(packr.pack(o));
const codeOf = (o: Record<string, unknown>): string => {
  try {
    decode(o);
  } catch (err) {
    if (err instanceof ProtocolError) return err.code;
    throw err;
  }
  return 'none';
};

describe('codec: rooms', () => {
  it('decodes send to a room, and keeps one-to-one send as it was', () => {
    expect(decode({ t: Op.Send, id: 'abcdefgh1', room: 'Lobby', text: 'hi' })).toEqual({ t: Op.Send, id: 'abcdefgh1', room: 'Lobby', text: 'hi' });
    expect(decode({ t: Op.Send, id: 'abcdefgh1', to: 'bob', text: 'hi' })).toEqual({ t: Op.Send, id: 'abcdefgh1', to: 'bob', text: 'hi' });
  });

  it('refuses a send with both addresses, with neither, or with a room that is not a string', () => {
    expect(codeOf({ t: Op.Send, id: 'abcdefgh1', to: 'bob', room: 'Lobby', text: 'hi' })).toBe('BAD_FRAME');
    expect(codeOf({ t: Op.Send, id: 'abcdefgh1', text: 'hi' })).toBe('BAD_FRAME');
    expect(codeOf({ t: Op.Send, id: 'abcdefgh1', room: 7, text: 'hi' })).toBe('BAD_FRAME');
    expect(codeOf({ t: Op.Send, id: 'abcdefgh1', room: 'Lobby', text: ' ' })).toBe('TEXT_EMPTY');
  });

  it('validates the room frames', () => {
    expect(decode({ t: Op.RoomCreate, room: 'Lobby', private: true })).toEqual({ t: Op.RoomCreate, room: 'Lobby', private: true });
    expect(decode({ t: Op.RoomCreate, room: 'Lobby' })).toEqual({ t: Op.RoomCreate, room: 'Lobby' });
    expect(codeOf({ t: Op.RoomCreate, room: 'Lobby', private: 'yes' })).toBe('BAD_FRAME');
    expect(decode({ t: Op.RoomInvite, room: 'Lobby', name: 'bob' })).toEqual({ t: Op.RoomInvite, room: 'Lobby', name: 'bob' });
    expect(codeOf({ t: Op.RoomInvite, room: 'Lobby' })).toBe('BAD_FRAME');
    expect(decode({ t: Op.RoomList, extra: 1 })).toEqual({ t: Op.RoomList });
    expect(codeOf({ t: Op.RoomWho, room: 'Lobby', id: 'x' })).toBe('BAD_ID');
    expect(codeOf({ t: Op.RoomJoin, room: 'x'.repeat(1000) })).toBe('BAD_FRAME');
  });

  it('a room message keeps room, rseq and line on the wire (the hand-laid writer does not know them)', () => {
    const f = { t: Op.Message, tag: 3, id: 'abcdefgh1', from: 'alice', text: '', ts: 5, room: 'Lobby', rseq: 9, line: 'joined' } as const;
    expect(decodeServerFrame(encodeFrame(f))).toEqual(f);
    const plain = { t: Op.Message, tag: 3, id: 'abcdefgh1', from: 'alice', text: 'hi', ts: 5 } as const;
    expect(decodeServerFrame(encodeFrame(plain))).toEqual(plain);
  });

  it('the client decoder knows the room frames the server sends', () => {
    const frames = [
      { t: Op.RoomInfo, room: 'Lobby', owner: 'alice', private: false, members: [['alice', true]] },
      { t: Op.RoomListed, rooms: [{ room: 'Lobby', owner: 'alice' }] },
      { t: Op.RoomReceipt, items: [['abcdefgh1', 'Lobby', 1, 2]] },
      { t: Op.RoomWhoIs, room: 'Lobby', id: 'abcdefgh1', delivered: ['bob'], pending: [] },
      { t: Op.RoomPresence, room: 'Lobby', name: 'bob', online: true },
      { t: Op.RoomGone, room: 'Lobby', reason: 'removed' },
      { t: Op.RoomInvited, room: 'Lobby', by: 'alice' },
    ] as const;
    for (const f of frames) expect(decodeServerFrame(encodeFrame(f as never))).toEqual(f);
  });
});
