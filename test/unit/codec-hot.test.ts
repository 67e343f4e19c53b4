/**
 * The hand-laid frames of the text path (shared/codec-hot.ts) against the general codec they stand in for:
 * - `message` and `receipt` frames encoded by hand decode, with any msgpack decoder, to exactly what the
 *   msgpackr encoding of the same frame decodes to (the encoder the codec used before), for random and edge
 *   values: unicode of every width, empty strings, the longest ids, names and texts, large tags and times;
 * - `send` and `ack` frames read by hand give the same frame or the same error code as the general path, for
 *   valid frames, malformed ones, truncations, and random corruptions of both.
 * The general path is reached on the same content by adding a key the hand reader does not know (the
 * validators ignore unknown keys), so each comparison is between the two paths of the real decoder.
 */
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeClientFrame, decodeServerFrame, encodeFrame, ProtocolError } from '../../shared/codec.ts';
import { Delivery, Limits, Op, type ClientFrame, type MessageFrame, type ReceiptFrame, type ReceiptItem } from '../../shared/protocol.ts';

/** The general codec's encoder and decoder, configured as shared/codec.ts configures them. */
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** A deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHARS = ['a', 'Z', '0', ' ', '~', '\u0000', '\u007f', 'é', 'ß', 'Ω', 'Ж', '\u07ff', '\u0800', '小', '明', '€', '\ufeff', '\uffff', '👋', '😀', '\u{10ffff}', '\u3000'];

function randomText(r: () => number, maxUnits: number): string {
  const len = Math.floor(r() ** 3 * maxUnits);
  let s = '';
  const ascii = r() < 0.4;
  while (s.length < len) s += ascii ? String.fromCharCode(32 + Math.floor(r() * 95)) : CHARS[Math.floor(r() * CHARS.length)]!;
  return s;
}

const NUMBERS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 1_764_637_200_000];

function randomMessage(r: () => number): MessageFrame {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const f: MessageFrame = {
    t: Op.Message,
    tag: r() < 0.5 ? pick(NUMBERS) : Math.floor(r() * 2 ** 40),
    id: randomText(r, Limits.maxIdChars),
    from: randomText(r, Limits.maxNameChars * 2),
    text: randomText(r, r() < 0.1 ? Limits.maxTextBytes : 300),
    ts: r() < 0.5 ? pick(NUMBERS) : Date.now() + Math.floor(r() * 1e9),
  };
  const q = r();
  return q < 0.3 ? { ...f, queued: true } : q < 0.4 ? { ...f, queued: false } : f;
}

function randomReceipt(r: () => number, n: number): ReceiptFrame {
  const states = Object.values(Delivery);
  const items: ReceiptItem[] = Array.from({ length: n }, () => [
    randomText(r, Limits.maxIdChars),
    randomText(r, Limits.maxNameChars * 2),
    states[Math.floor(r() * states.length)]!,
  ]);
  return { t: Op.Receipt, items };
}

/** What the general encoder's bytes for `f` decode to: what every peer saw before. */
function before(f: object): unknown {
  return unpackr.unpack(packr.pack(f));
}

describe('hand-laid message and receipt frames', () => {
  it('decode to what the general encoding decodes to, for 3,000 random messages', () => {
    const r = rng(1);
    for (let i = 0; i < 3000; i++) {
      const f = randomMessage(r);
      const bytes = encodeFrame(f);
      expect(unpackr.unpack(bytes)).toEqual(before(f));
      expect(decodeServerFrame(bytes)).toEqual(f);
    }
  });

  it('hold the edges: empty strings, the longest id, name and text, every integer width, queued both ways', () => {
    const longest = { id: 'x'.repeat(Limits.maxIdChars), from: '明'.repeat(Limits.maxNameChars), text: '€'.repeat(Math.floor(Limits.maxTextBytes / 3)) + 'a' };
    const cases: MessageFrame[] = [
      { t: Op.Message, tag: 0, id: '', from: '', text: '', ts: 0 },
      { t: Op.Message, tag: 2 ** 53 - 1, ...longest, ts: 2 ** 53 - 1, queued: true },
      { t: Op.Message, tag: 1, id: 'a'.repeat(10), from: 'bob', text: 'a'.repeat(Limits.maxTextBytes), ts: 1 },
      { t: Op.Message, tag: 1, id: 'a'.repeat(10), from: 'bob', text: '😀'.repeat(Limits.maxTextBytes / 4), ts: 1.5 },
      ...NUMBERS.map((n) => ({ t: Op.Message, tag: n, id: 'abcdefgh', from: 'b', text: 'x'.repeat(n % 70), ts: n, queued: false }) as MessageFrame),
      // Lengths on both sides of each string header size (31/32 bytes, 255/256, 65535/65536).
      ...[10, 11, 31, 32, 85, 86, 255, 256, 21845, 21846].map((n) => ({ t: Op.Message, tag: 3, id: 'é'.repeat(n % 40), from: 'a'.repeat(n % 130), text: 'a'.repeat(n) + '€'.repeat(n % 7), ts: 3 }) as MessageFrame),
    ];
    for (const f of cases) {
      const bytes = encodeFrame(f);
      expect(unpackr.unpack(bytes)).toEqual(before(f));
      expect(decodeServerFrame(bytes)).toEqual(f);
    }
  });

  it('write lone surrogates as U+FFFD (well-formed UTF-8), the character utf8Length counts them as', () => {
    for (const text of ['\ud800', 'a\udc00b', '\ud83d', 'x'.repeat(70) + '\ud800' + 'é', '\udbff\udbff\udfff']) {
      const f: MessageFrame = { t: Op.Message, tag: 1, id: 'abcdefgh', from: 'bob', text, ts: 1 };
      const wellFormed = text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
      expect(decodeServerFrame(encodeFrame(f))).toEqual({ ...f, text: wellFormed });
    }
  });

  it('receipts of 0 to 70,000 items decode as before (fixarray, array16 and array32 headers)', () => {
    const r = rng(2);
    for (const n of [0, 1, 2, 15, 16, 17, 100, 65535, 65536, 70_000]) {
      const f = randomReceipt(r, n);
      const bytes = encodeFrame(f);
      expect(unpackr.unpack(bytes)).toEqual(before(f));
      expect(decodeServerFrame(bytes)).toEqual(f);
    }
    for (let i = 0; i < 500; i++) {
      const f = randomReceipt(r, Math.floor(r() * 40));
      expect(unpackr.unpack(encodeFrame(f))).toEqual(before(f));
    }
  });

  it('stay intact while many more frames are encoded after them (a shared buffer is never written twice)', () => {
    const r = rng(3);
    const frames = Array.from({ length: 5000 }, (_, i) => (i % 3 === 0 ? randomReceipt(r, 1 + (i % 5)) : randomMessage(r)));
    const encoded = frames.map((f) => encodeFrame(f));
    encoded.forEach((bytes, i) => expect(decodeServerFrame(bytes)).toEqual(frames[i]));
  });

  it('a frame whose fields are not of their declared types is encoded the general way', () => {
    const odd = { t: Op.Message, tag: '7', id: 'abcdefgh', from: 'bob', text: 'hi', ts: 1 } as unknown as MessageFrame;
    expect(unpackr.unpack(encodeFrame(odd))).toEqual(before(odd));
    const oddReceipt = { t: Op.Receipt, items: [['abcdefgh', 'bob']] } as unknown as ReceiptFrame;
    expect(unpackr.unpack(encodeFrame(oddReceipt))).toEqual(before(oddReceipt));
  });
});

/** The decoder's outcome: the frame, or the error code. */
function outcome(bytes: Uint8Array): unknown {
  try {
    return { frame: decodeClientFrame(bytes) };
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    return { code: e.code };
  }
}

/**
 * The general path's outcome for the same bytes: msgpackr's decoding, then (through a key the hand reader
 * refuses and the validators ignore) the same validators.
 */
function general(bytes: Uint8Array): unknown {
  let o: unknown;
  try {
    o = unpackr.unpack(bytes);
  } catch {
    return { code: 'BAD_FRAME' };
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array) return { code: 'BAD_FRAME' };
  return outcome(packr.pack({ ...(o as object), zz: 0 }));
}

/** A fixmap (the header msgpackr does not write) with the entries in the given order. */
function fixmap(entries: Array<[string, unknown]>): Uint8Array {
  const parts = entries.flatMap(([k, v]) => [packr.pack(k), packr.pack(v)]);
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = 0x80 | entries.length;
  let at = 1;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function randomClientFrame(r: () => number): ClientFrame {
  if (r() < 0.5) {
    const id = r() < 0.9 ? 'abcdefgh' + Math.floor(r() * 1e9).toString(36) : randomText(r, 70);
    return { t: Op.Send, id, to: randomText(r, 40), text: randomText(r, r() < 0.1 ? Limits.maxTextBytes + 10 : 200) };
  }
  const n = r() < 0.05 ? Limits.maxAckTags + 1 : Math.floor(r() * 40);
  return { t: Op.Ack, tags: Array.from({ length: n }, () => (r() < 0.5 ? NUMBERS[Math.floor(r() * NUMBERS.length)]! : Math.floor(r() * 1000))) };
}

describe('hand-read send and ack frames', () => {
  it('give the same frame or error code as the general path, for 3,000 random frames in both map headers and any key order', () => {
    const r = rng(4);
    for (let i = 0; i < 3000; i++) {
      const f = randomClientFrame(r);
      const entries = Object.entries(f).sort(() => r() - 0.5);
      for (const bytes of [packr.pack(f), fixmap(entries)]) expect(outcome(bytes)).toEqual(general(bytes));
    }
  });

  it('give each malformed send and ack its code, as the general path does', () => {
    const cases: Array<[object, string]> = [
      [{ t: Op.Send, id: 'short', to: 'bob', text: 'x' }, 'BAD_ID'],
      [{ t: Op.Send, id: 'abcdefgh!', to: 'bob', text: 'x' }, 'BAD_ID'],
      [{ t: Op.Send, id: 'a'.repeat(Limits.maxIdChars + 1), to: 'bob', text: 'x' }, 'BAD_ID'],
      [{ t: Op.Send, id: 'abcdefgh', to: 7, text: 'x' }, 'BAD_FRAME'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'b'.repeat(Limits.maxNameChars * 4 + 1), text: 'x' }, 'BAD_FRAME'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'bob', text: '' }, 'TEXT_EMPTY'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'bob', text: ' \u3000\n' }, 'TEXT_EMPTY'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'bob', text: '€'.repeat(Math.floor(Limits.maxTextBytes / 3)) + 'ab' }, 'TEXT_TOO_LONG'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'bob', text: 5 }, 'BAD_FRAME'],
      [{ t: Op.Send, id: 'abcdefgh', to: 'bob' }, 'BAD_FRAME'],
      [{ t: Op.Ack, tags: [] }, 'BAD_FRAME'],
      [{ t: Op.Ack, tags: [1, -1] }, 'BAD_FRAME'],
      [{ t: Op.Ack, tags: [1.5] }, 'BAD_FRAME'],
      [{ t: Op.Ack, tags: Array.from({ length: Limits.maxAckTags + 1 }, (_, i) => i) }, 'BAD_FRAME'],
      [{ t: Op.Ack, tags: 'x' }, 'BAD_FRAME'],
      [{ t: 99, id: 'abcdefgh', to: 'bob', text: 'x' }, 'UNKNOWN_TYPE'],
    ];
    for (const [f, code] of cases) {
      for (const bytes of [packr.pack(f), fixmap(Object.entries(f))]) {
        expect(outcome(bytes), JSON.stringify(f).slice(0, 80)).toEqual({ code });
        expect(outcome(bytes)).toEqual(general(bytes));
      }
    }
  });

  it('refuse every truncation and a trailing byte of a valid send and ack as not valid msgpack', () => {
    for (const f of [{ t: Op.Send, id: 'abcdefgh12', to: 'bob', text: 'hi there 👋' }, { t: Op.Ack, tags: [1, 300, 70000, 2 ** 32 - 1] }]) {
      const bytes = packr.pack(f);
      expect(outcome(bytes)).toEqual({ frame: f });
      for (let n = 1; n < bytes.length; n++) expect(outcome(bytes.subarray(0, n))).toEqual({ code: 'BAD_FRAME' });
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      expect(outcome(longer)).toEqual({ code: 'BAD_FRAME' });
    }
  });

  it('treat repeated keys and invalid UTF-8 as the general path does', () => {
    const repeated = fixmap([['t', Op.Send], ['id', 'abcdefgh'], ['id', 'ijklmnop'], ['to', 'bob'], ['text', 'x']]);
    expect(outcome(repeated)).toEqual(general(repeated));
    const bytes = fixmap([['t', Op.Send], ['id', 'abcdefgh'], ['to', 'bob'], ['text', 'xyz']]);
    bytes[bytes.length - 2] = 0xff; // the text is now invalid UTF-8
    expect(outcome(bytes)).toEqual(general(bytes));
  });

  it('agree with the general path on 20,000 random corruptions of valid frames', () => {
    const r = rng(5);
    for (let i = 0; i < 20_000; i++) {
      const f = randomClientFrame(r);
      const bytes = Uint8Array.from(r() < 0.5 ? packr.pack(f) : fixmap(Object.entries(f)));
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
      expect(outcome(bytes)).toEqual(general(bytes));
    }
  });
});
