/**
 * Hand-laid msgpack for the frames of the text path, used by shared/codec.ts: the server's `message` and
 * `receipt` frames are written field by field, and the client's `send` and `ack` frames are read the same
 * way. The bytes are ordinary msgpack maps, so any msgpack decoder reads them as the general codec's output
 * (the wire format does not change); what is saved is msgpackr's generic walk over each object's keys and
 * values, once per message and per receipt.
 *
 * Writing: frames go into a shared slab, each returned as a view of its own bytes. A slab is never written
 * twice, so earlier frames stay valid; a new one is allocated when the next frame might not fit (msgpackr
 * does the same with its buffer). Strings are written with the widest header their UTF-16 length could need
 * (msgpack lets a short string use a longer header), then the UTF-8 bytes; lone surrogates become U+FFFD,
 * the well-formed form `utf8Length` counts them as.
 *
 * Reading: `readHotClientFrame` accepts only the exact shapes clients send (a map of known keys, each once,
 * with plain values and nothing after it) and returns the same plain object msgpackr would have made, or
 * `undefined` for anything else, which the caller then decodes the general way. Validation is not done
 * here: both ways end in the same validator, so every frame gets the same checks and the same error codes.
 */
import { Op, type MessageFrame, type ReceiptFrame } from './protocol.ts';

const SLAB_BYTES = 64 * 1024;
const encoder = new TextEncoder();
/** Strings longer than this go through TextEncoder.encodeInto; shorter ones through the loop below. */
const LOOP_MAX = 64;

/** Most bytes `s` can take as a msgpack string: 3 UTF-8 bytes per UTF-16 unit at most, plus a 5-byte header. */
function strMax(s: string): number {
  return 5 + 3 * s.length;
}

/** A map key (ASCII, under 32 bytes) as its msgpack bytes. */
function key(name: string): number[] {
  return [0xa0 | name.length, ...Array.from(name, (c) => c.charCodeAt(0))];
}

/**
 * The slab and the position in it. An object's fields rather than module-level `let`s: V8 reads those through
 * the module context with a hole check on every access, which showed in profiles of the byte loops.
 */
class Writer {
  buf = new Uint8Array(SLAB_BYTES);
  view = new DataView(this.buf.buffer);
  pos = 0;

  /** Makes room for `max` bytes at `pos`, in a fresh slab if the current one is too full. */
  reserve(max: number): void {
    if (this.pos + max <= this.buf.length) return;
    this.buf = new Uint8Array(Math.max(SLAB_BYTES, max));
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  /** Bytes given as numbers (keys, headers): a loop beats TypedArray#set at these sizes. */
  raw(bytes: readonly number[]): void {
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < bytes.length; i++) buf[p++] = bytes[i]!;
    this.pos = p;
  }

  str(s: string): void {
    const buf = this.buf;
    const n = s.length;
    const most = 3 * n;
    const head = most < 32 ? 1 : most < 0x100 ? 2 : most < 0x10000 ? 3 : 5;
    const start = this.pos;
    let p = start + head;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i < n) {
      if (n - i > LOOP_MAX) {
        p += encoder.encodeInto(i === 0 ? s : s.slice(i), buf.subarray(p)).written;
      } else {
        for (; i < n; i++) {
          let c = s.charCodeAt(i);
          if (c < 0x80) {
            buf[p++] = c;
          } else if (c < 0x800) {
            buf[p++] = 0xc0 | (c >> 6);
            buf[p++] = 0x80 | (c & 0x3f);
          } else {
            if (c >= 0xd800 && c <= 0xdfff) {
              const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
              if (c <= 0xdbff && (d & 0xfc00) === 0xdc00) {
                const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
                buf[p++] = 0xf0 | (cp >> 18);
                buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
                buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
                buf[p++] = 0x80 | (cp & 0x3f);
                i++;
                continue;
              }
              c = 0xfffd;
            }
            buf[p++] = 0xe0 | (c >> 12);
            buf[p++] = 0x80 | ((c >> 6) & 0x3f);
            buf[p++] = 0x80 | (c & 0x3f);
          }
        }
      }
    }
    const len = p - start - head;
    if (head === 1) {
      buf[start] = 0xa0 | len;
    } else if (head === 2) {
      buf[start] = 0xd9;
      buf[start + 1] = len;
    } else if (head === 3) {
      buf[start] = 0xda;
      this.view.setUint16(start + 1, len);
    } else {
      buf[start] = 0xdb;
      this.view.setUint32(start + 1, len);
    }
    this.pos = p;
  }

  /** Unsigned 32-bit integers in their shortest form; every other number as a float64, as msgpackr writes them. */
  num(v: number): void {
    const buf = this.buf;
    let p = this.pos;
    if (v >>> 0 === v) {
      if (v < 0x80) {
        buf[p++] = v;
      } else if (v < 0x100) {
        buf[p++] = 0xcc;
        buf[p++] = v;
      } else if (v < 0x10000) {
        buf[p++] = 0xcd;
        buf[p++] = v >>> 8;
        buf[p++] = v & 0xff;
      } else {
        buf[p++] = 0xce;
        buf[p++] = v >>> 24;
        buf[p++] = (v >>> 16) & 0xff;
        buf[p++] = (v >>> 8) & 0xff;
        buf[p++] = v & 0xff;
      }
    } else {
      buf[p++] = 0xcb;
      this.view.setFloat64(p, v);
      p += 8;
    }
    this.pos = p;
  }

  /** An array header for `n` items. */
  array(n: number): void {
    if (n < 16) {
      this.buf[this.pos++] = 0x90 | n;
    } else if (n < 0x10000) {
      this.buf[this.pos] = 0xdc;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else {
      this.buf[this.pos] = 0xdd;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    }
  }
}

const w = new Writer();

/** Map header (6 entries), `t: message`, and the `tag` key: the same bytes at the start of every message frame. */
const MESSAGE_HEAD = [0x86, ...key('t'), Op.Message, ...key('tag')];
const MESSAGE_QUEUED_HEAD = [0x87, ...MESSAGE_HEAD.slice(1)];
const K_ID = key('id');
const K_FROM = key('from');
const K_TEXT = key('text');
const K_TS = key('ts');
const QUEUED_TRUE = [...key('queued'), 0xc3];
const QUEUED_FALSE = [...key('queued'), 0xc2];
/** Map header (2 entries), `t: receipt`, and the `items` key. */
const RECEIPT_HEAD = [0x82, ...key('t'), Op.Receipt, ...key('items')];
/** Room for a frame's map header, keys, numbers and booleans, beside its strings. */
const FIXED_MAX = 96;

/** The frame's bytes, or undefined when a field is not of its declared type (the caller packs it generally). */
export function writeMessage(f: MessageFrame): Uint8Array | undefined {
  const { tag, id, from, text, ts, queued } = f;
  if (typeof tag !== 'number' || typeof id !== 'string' || typeof from !== 'string' || typeof text !== 'string') return undefined;
  if (typeof ts !== 'number' || (queued !== undefined && typeof queued !== 'boolean')) return undefined;
  w.reserve(FIXED_MAX + strMax(id) + strMax(from) + strMax(text));
  const start = w.pos;
  w.raw(queued === undefined ? MESSAGE_HEAD : MESSAGE_QUEUED_HEAD);
  w.num(tag);
  w.raw(K_ID);
  w.str(id);
  w.raw(K_FROM);
  w.str(from);
  w.raw(K_TEXT);
  w.str(text);
  w.raw(K_TS);
  w.num(ts);
  if (queued !== undefined) w.raw(queued ? QUEUED_TRUE : QUEUED_FALSE);
  return w.buf.subarray(start, w.pos);
}

/** The frame's bytes, or undefined when an item is not an `[id, to, state]` of strings. */
export function writeReceipt(f: ReceiptFrame): Uint8Array | undefined {
  const items = f.items;
  if (!Array.isArray(items)) return undefined;
  let max = FIXED_MAX;
  for (const item of items) {
    if (!Array.isArray(item) || item.length !== 3) return undefined;
    const [id, to, state] = item;
    if (typeof id !== 'string' || typeof to !== 'string' || typeof state !== 'string') return undefined;
    max += 1 + strMax(id) + strMax(to) + strMax(state);
  }
  w.reserve(max);
  const start = w.pos;
  w.raw(RECEIPT_HEAD);
  w.array(items.length);
  for (const [id, to, state] of items) {
    w.buf[w.pos++] = 0x93;
    w.str(id);
    w.str(to);
    w.str(state);
  }
  return w.buf.subarray(start, w.pos);
}

// --- reading ----------------------------------------------------------------------------------------------

/** Strict: invalid UTF-8 sends the frame down the general path, which decodes it as it always did. */
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Where the reader stands (fields, not module-level `let`s, as for the writer); `undefined` results mean
 * "not a hot shape" and abandon the frame.
 */
const rd: { src: Uint8Array; at: number } = { src: new Uint8Array(0), at: 0 };

function readStr(): string | undefined {
  const src = rd.src;
  let at = rd.at;
  const left = src.length - at;
  if (left <= 0) return undefined;
  const h = src[at]!;
  let len: number;
  if ((h & 0xe0) === 0xa0) {
    len = h & 0x1f;
    at += 1;
  } else if (h === 0xd9 && left >= 2) {
    len = src[at + 1]!;
    at += 2;
  } else if (h === 0xda && left >= 3) {
    len = (src[at + 1]! << 8) | src[at + 2]!;
    at += 3;
  } else if (h === 0xdb && left >= 5) {
    len = ((src[at + 1]! << 24) | (src[at + 2]! << 16) | (src[at + 3]! << 8) | src[at + 4]!) >>> 0;
    at += 5;
  } else {
    return undefined;
  }
  const end = at + len;
  if (end > src.length) return undefined;
  let s: string;
  let ascii = len <= LOOP_MAX;
  for (let i = at; ascii && i < end; i++) if (src[i]! >= 0x80) ascii = false;
  if (ascii) {
    s = asciiString(src, at, end);
  } else {
    try {
      s = decoder.decode(src.subarray(at, end));
    } catch {
      return undefined;
    }
  }
  rd.at = end;
  return s;
}

/** One reusable array of char codes per length up to LOOP_MAX, for `asciiString`. */
const codeArrays: number[][] = Array.from({ length: LOOP_MAX + 1 }, (_, n) => new Array<number>(n).fill(0));

/**
 * Bytes known to be ASCII as a string, made by one `fromCharCode` call: a flat string, which the validators'
 * regular expression and trim() read without flattening it first (a string built by `+=` would need that).
 */
function asciiString(b: Uint8Array, start: number, end: number): string {
  const codes = codeArrays[end - start]!;
  for (let i = 0; i < codes.length; i++) codes[i] = b[start + i]!;
  return String.fromCharCode.apply(null, codes);
}

/** A non-negative integer in any of msgpack's unsigned forms. */
function readUint(): number | undefined {
  const h = rd.src[rd.at]!;
  if (h < 0x80) {
    rd.at += 1;
    return h;
  }
  if (h === 0xcc) {
    rd.at += 2;
    return rd.src[rd.at - 1];
  }
  if (h === 0xcd) {
    rd.at += 3;
    return (rd.src[rd.at - 2]! << 8) | rd.src[rd.at - 1]!;
  }
  if (h === 0xce) {
    rd.at += 5;
    return ((rd.src[rd.at - 4]! << 24) | (rd.src[rd.at - 3]! << 16) | (rd.src[rd.at - 2]! << 8) | rd.src[rd.at - 1]!) >>> 0;
  }
  return undefined;
}

function readTags(): number[] | undefined {
  const h = rd.src[rd.at]!;
  let n: number;
  if ((h & 0xf0) === 0x90) {
    n = h & 0x0f;
    rd.at += 1;
  } else if (h === 0xdc) {
    n = (rd.src[rd.at + 1]! << 8) | rd.src[rd.at + 2]!;
    rd.at += 3;
  } else {
    return undefined;
  }
  // Each tag takes rd.at least one byte: a count beyond what is left is not a hot shape.
  if (n > rd.src.length - rd.at) return undefined;
  const tags = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const v = rd.at < rd.src.length ? readUint() : undefined;
    if (v === undefined || rd.at > rd.src.length) return undefined;
    tags[i] = v;
  }
  return tags;
}

const T = 0x74;
const I = 0x69;
const D = 0x64;
const O = 0x6f;
const X = 0x78;
const A = 0x61;
const G = 0x67;
const S = 0x73;
const E = 0x65;

/**
 * The plain object a client's `send` or `ack` frame decodes to, read by hand; undefined for any other bytes.
 * Handles maps of up to 15 entries with a fixmap or map16 header (msgpackr writes map16).
 */
export function readHotClientFrame(bytes: Uint8Array): Record<string, unknown> | undefined {
  rd.src = bytes;
  rd.at = 0;
  const h = bytes[0]!;
  let n: number;
  if ((h & 0xf0) === 0x80) {
    n = h & 0x0f;
    rd.at = 1;
  } else if (h === 0xde && bytes.length >= 3) {
    n = (bytes[1]! << 8) | bytes[2]!;
    rd.at = 3;
  } else {
    return undefined;
  }
  if (n > 4) return undefined;
  let t: number | undefined;
  let id: string | undefined;
  let to: string | undefined;
  let text: string | undefined;
  let tags: number[] | undefined;
  for (let k = 0; k < n; k++) {
    if (rd.at + 2 > bytes.length) return undefined;
    const kh = bytes[rd.at]!;
    const c0 = bytes[rd.at + 1]!;
    if (kh === 0xa1 && c0 === T) {
      rd.at += 2;
      if (t !== undefined || rd.at >= bytes.length || bytes[rd.at]! >= 0x80) return undefined;
      t = bytes[rd.at++];
    } else if (kh === 0xa2 && rd.at + 3 <= bytes.length) {
      const c1 = bytes[rd.at + 2]!;
      rd.at += 3;
      if (rd.at >= bytes.length) return undefined;
      if (c0 === I && c1 === D && id === undefined) id = readStr();
      else if (c0 === T && c1 === O && to === undefined) to = readStr();
      else return undefined;
      if ((c1 === D ? id : to) === undefined) return undefined;
    } else if (kh === 0xa4 && rd.at + 5 <= bytes.length && c0 === T) {
      const c1 = bytes[rd.at + 2]!;
      const c2 = bytes[rd.at + 3]!;
      const c3 = bytes[rd.at + 4]!;
      rd.at += 5;
      if (rd.at >= bytes.length) return undefined;
      if (c1 === E && c2 === X && c3 === T && text === undefined) {
        text = readStr();
        if (text === undefined) return undefined;
      } else if (c1 === A && c2 === G && c3 === S && tags === undefined) {
        tags = readTags();
        if (tags === undefined) return undefined;
      } else {
        return undefined;
      }
    } else {
      return undefined;
    }
    if (rd.at > bytes.length) return undefined;
  }
  if (rd.at !== bytes.length) return undefined;
  if (t === Op.Send && tags === undefined && n === 4 && id !== undefined && to !== undefined && text !== undefined) {
    return { t, id, to, text };
  }
  if (t === Op.Ack && n === 2 && tags !== undefined) return { t, tags };
  return undefined;
}
