import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { CHUNK_TAG, chunkPayload, encodeChunk, readChunkHeader } from '../../shared/chunk.ts';
import { decodeClientFrame, decodeServerFrame, encodeFrame, ProtocolError, utf8Length } from '../../shared/codec.ts';
import { Limits, Op, PROTOCOL_VERSION, type ClientFrame } from '../../shared/protocol.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof ProtocolError ? e.code : `not a ProtocolError: ${String(e)}`;
  }
  return undefined;
}

describe('decodeClientFrame', () => {
  it('round-trips every client frame kind', () => {
    const frames: ClientFrame[] = [
      { t: Op.Hello, v: PROTOCOL_VERSION },
      { t: Op.Hello, v: PROTOCOL_VERSION, follow: ['bob', '小明'] },
      { t: Op.Send, id: 'abcdefgh12', to: 'bob', text: 'hi 👋' },
      { t: Op.Ack, tags: [1, 2, 3] },
      { t: Op.Follow, names: [] },
      { t: Op.Ping, n: 7 },
      { t: Op.Read, to: 'bob', ids: ['abcdefgh12'] },
      { t: Op.Typing, to: 'bob', on: true },
      { t: Op.StreamOffer, ref: 'r1', to: 'bob', name: 'a.mp4', size: 10, mime: 'video/mp4', container: 'mp4' },
      { t: Op.StreamAnswer, sid: 1, accept: true, credit: 100 },
      { t: Op.StreamCredit, sid: 1, bytes: 100 },
      { t: Op.StreamEnd, sid: 1 },
      { t: Op.StreamCancel, sid: 1, reason: 'bored' },
      { t: Op.StreamResume, tid: 'r1', from: 'alice', held: [[0, 10], [20, 30]], credit: 100 },
      { t: Op.StreamResume, tid: 'r1', from: 'alice', held: [] },
      { t: Op.StreamDrop, tid: 'r1', peer: 'alice' },
    ];
    for (const f of frames) expect(decodeClientFrame(encodeFrame(f))).toEqual(f);
  });

  it('drops fields a frame kind does not have (a client cannot smuggle `from`)', () => {
    expect(decodeClientFrame(pack({ t: Op.Send, id: 'abcdefgh12', to: 'bob', text: 'x', from: 'boss' }))).toEqual({ t: Op.Send, id: 'abcdefgh12', to: 'bob', text: 'x' });
  });

  it('gives each kind of bad input its code', () => {
    expect(code(() => decodeClientFrame(new Uint8Array(0)))).toBe('BAD_FRAME');
    expect(code(() => decodeClientFrame(new Uint8Array([0xff, 0x00])))).toBe('BAD_FRAME');
    expect(code(() => decodeClientFrame(pack([1, 2])))).toBe('BAD_FRAME');
    expect(code(() => decodeClientFrame(pack({ t: 'send' })))).toBe('UNKNOWN_TYPE');
    expect(code(() => decodeClientFrame(pack({ t: 200 })))).toBe('UNKNOWN_TYPE');
    expect(code(() => decodeClientFrame(pack({ t: Op.Send, id: 'short', to: 'b', text: 'x' })))).toBe('BAD_ID');
    expect(code(() => decodeClientFrame(pack({ t: Op.Send, id: 'abcdefgh12', to: 'b', text: '  ' })))).toBe('TEXT_EMPTY');
    expect(code(() => decodeClientFrame(pack({ t: Op.Send, id: 'abcdefgh12', to: 'b', text: '€'.repeat(Limits.maxTextBytes / 3 + 1) })))).toBe('TEXT_TOO_LONG');
    expect(code(() => decodeClientFrame(pack({ t: Op.Ack, tags: [-1] })))).toBe('BAD_FRAME');
    expect(code(() => decodeClientFrame(pack({ t: Op.StreamAnswer, sid: 1, accept: 'yes' })))).toBe('BAD_FRAME');
    expect(code(() => decodeClientFrame(new Uint8Array(Limits.maxControlFrameBytes + 1).fill(0x80)))).toBe('TOO_LARGE');
    expect(code(() => decodeClientFrame(new Uint8Array([CHUNK_TAG, 1, 2])))).toBe('BAD_FRAME');
  });

  it('never throws anything but ProtocolError on random bytes', () => {
    for (let i = 0; i < 5000; i++) {
      const bytes = new Uint8Array(1 + (i % 300)).map(() => Math.floor(Math.random() * 256));
      const c = code(() => decodeClientFrame(bytes));
      expect(c === undefined || !c.startsWith('not a')).toBe(true);
    }
  });

  it('text limits count UTF-8 bytes, not UTF-16 units', () => {
    expect(utf8Length('a')).toBe(1);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('€')).toBe(3);
    expect(utf8Length('👋')).toBe(4);
    expect(utf8Length('\ud800')).toBe(3); // lone surrogate: encoded as U+FFFD
    const exact = 'a'.repeat(Limits.maxTextBytes - 4) + '👋';
    expect(decodeClientFrame(pack({ t: Op.Send, id: 'abcdefgh12', to: 'b', text: exact }))).toMatchObject({ text: exact });
  });
});

describe('decodeClientFrame text checks at the edges of their shortcuts', () => {
  const send = (text: string) => () => decodeClientFrame(pack({ t: Op.Send, id: 'abcdefgh12', to: 'b', text }));
  const third = Math.floor(Limits.maxTextBytes / 3);

  it('counts the bytes exactly wherever the length alone cannot decide', () => {
    expect(code(send('€'.repeat(third)))).toBeUndefined(); // 3 * 5461 bytes: fits without counting
    expect(code(send('€'.repeat(third) + 'a'))).toBeUndefined(); // 16,384 bytes: exactly the limit
    expect(code(send('€'.repeat(third) + 'ab'))).toBe('TEXT_TOO_LONG'); // one byte over
    expect(code(send('😀'.repeat(Limits.maxTextBytes / 4 + 1)))).toBe('TEXT_TOO_LONG'); // 4 bytes per 2 units
    expect(code(send('a'.repeat(Limits.maxTextBytes)))).toBeUndefined();
    expect(code(send('a'.repeat(Limits.maxTextBytes + 1)))).toBe('TEXT_TOO_LONG');
  });

  it('still finds every kind of whitespace-only text empty, and texts that start with a space not', () => {
    for (const ws of [' ', '\t\n', '\u00a0', '\u3000 ', '\ufeff', '\u2028\u2029', ' \u205f\u202f']) {
      expect(code(send(ws)), JSON.stringify(ws)).toBe('TEXT_EMPTY');
    }
    for (const ok of [' a', '\u00a0x', '~', '!', 'é', '\u0000']) expect(code(send(ok)), JSON.stringify(ok)).toBeUndefined();
  });
});

describe('chunk frames', () => {
  it('carry sid, offset and the payload untouched', () => {
    const payload = new Uint8Array([1, 2, 3, 4, 5]);
    const frame = encodeChunk(0xfffffffe, 2 ** 40 + 3, payload);
    expect(frame[0]).toBe(CHUNK_TAG);
    expect(readChunkHeader(frame)).toEqual({ sid: 0xfffffffe, offset: 2 ** 40 + 3, length: 5 });
    expect([...chunkPayload(frame)]).toEqual([1, 2, 3, 4, 5]);
    const decoded = decodeClientFrame(frame);
    expect(decoded.t).toBe('chunk');
    expect(decodeServerFrame(frame).t).toBe('chunk');
  });

  it('refuse negative, fractional or unsafe offsets', () => {
    for (const offset of [-1, 1.5, 2 ** 60]) {
      const f = encodeChunk(1, 0, new Uint8Array(1));
      new DataView(f.buffer).setFloat64(5, offset);
      expect(readChunkHeader(f)).toBeNull();
    }
  });
});
