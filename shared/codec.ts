/**
 * The one codec. `encodeFrame` turns a control frame into bytes; `decodeClientFrame` is the single place where
 * bytes from a client become a checked frame (or a coded ProtocolError); `decodeServerFrame` is the client's
 * counterpart. msgpackr hands back `any`: nothing past this file sees an unchecked value.
 */
import { Packr, Unpackr } from 'msgpackr';
import { CHUNK_TAG, MAX_STREAM_RUNS, readChunkHeader, type ChunkHeader } from './chunk.ts';
import { readHotClientFrame, writeMessage, writeReceipt } from './codec-hot.ts';
import type { ErrorCodeName } from './codes.ts';
import {
  Limits, Op,
  type ByteRanges, type ClientFrame, type ControlFrame, type ServerFrame,
} from './protocol.ts';

// Records and structured-clone extensions are off: frames are plain maps, and untrusted input must not be able
// to define structures the next frame is decoded with.
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** A frame that breaks the protocol; `code` goes to the peer in an error frame. */
export class ProtocolError extends Error {
  constructor(readonly code: ErrorCodeName, message: string, readonly ref?: string | number) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * A control frame as msgpack. `message` and `receipt` frames, the ones sent per message, are laid out by hand
 * (shared/codec-hot.ts): the same map, read the same by any decoder, without msgpackr's generic walk.
 */
export function encodeFrame(frame: ControlFrame): Uint8Array {
  // Room messages carry fields the hand-laid writer does not know: they take the general way.
  const hot = frame.t === Op.Message ? (frame.room === undefined ? writeMessage(frame) : undefined)
    : frame.t === Op.Receipt ? writeReceipt(frame) : undefined;
  return hot ?? packr.pack(frame);
}

/** A chunk frame as decoded: its header and the whole frame (payload still inside, never copied). */
export interface ChunkFrame { t: 'chunk'; header: ChunkHeader; bytes: Uint8Array }

const ID_RE = /^[A-Za-z0-9_-]+$/;

/** UTF-8 length of a JS string without allocating. Lone surrogates count as the 3-byte replacement char. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function bad(message: string, ref?: string | number): never {
  throw new ProtocolError('BAD_FRAME', message, ref);
}

function str(o: Record<string, unknown>, k: string, max: number, ref?: string | number): string {
  const v = o[k];
  if (typeof v !== 'string') bad(`${k} must be a string`, ref);
  if (v.length > max) bad(`${k} is longer than ${max}`, ref);
  return v;
}

function uint(o: Record<string, unknown>, k: string, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) bad(`${k} must be an integer 0..${max}`);
  return v;
}

function msgId(o: Record<string, unknown>): string {
  const v = o.id;
  if (typeof v !== 'string' || v.length < Limits.minIdChars || v.length > Limits.maxIdChars || !ID_RE.test(v)) {
    throw new ProtocolError('BAD_ID', `id must be ${Limits.minIdChars}-${Limits.maxIdChars} chars of [A-Za-z0-9_-]`);
  }
  return v;
}

function strList(o: Record<string, unknown>, k: string, maxItems: number, maxLen: number): string[] {
  const v = o[k];
  if (!Array.isArray(v)) bad(`${k} must be an array`);
  if (v.length > maxItems) bad(`${k} has more than ${maxItems} items`);
  for (const s of v) if (typeof s !== 'string' || s.length > maxLen) bad(`${k} must hold strings`);
  return v as string[];
}

// Names are only shape-checked here (string, bounded); the core normalises and looks them up.
const NAME_MAX = Limits.maxNameChars * 4;

/** Texts of at most this many UTF-16 units are within `maxTextBytes` of UTF-8 whatever they hold. */
const TEXT_SURELY_FITS = Math.floor(Limits.maxTextBytes / 3);

/**
 * A transfer id: the offer's `ref`, which the recipient also uses to name its file on disk, so only id
 * characters. Shape only; whether such a transfer exists is the core's question.
 */
function transferId(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > Limits.maxIdChars || !ID_RE.test(v)) {
    throw new ProtocolError('BAD_ID', `${k} must be 1-${Limits.maxIdChars} chars of [A-Za-z0-9_-]`);
  }
  return v;
}

/** Up to MAX_STREAM_RUNS `[start, end)` pairs of whole numbers; order and bounds are checked by the core. */
function byteRanges(o: Record<string, unknown>, k: string, ref: string): ByteRanges {
  const v = o[k];
  if (!Array.isArray(v) || v.length > MAX_STREAM_RUNS) bad(`${k} must be an array of at most ${MAX_STREAM_RUNS} byte ranges`, ref);
  for (const r of v) {
    if (!Array.isArray(r) || r.length !== 2 || !r.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) {
      bad(`${k} must hold [start, end] pairs of whole numbers`, ref);
    }
  }
  return (v as [number, number][]).map(([a, b]) => [a, b]);
}

type Validator = (o: Record<string, unknown>) => ClientFrame;

/** One validator per client opcode: the table the server dispatches through mirrors this one. */
const clientValidators: Record<number, Validator> = {
  [Op.Hello]: (o) => {
    const v = uint(o, 'v', 0xffff);
    return o.follow === undefined
      ? { t: Op.Hello, v }
      : { t: Op.Hello, v, follow: strList(o, 'follow', Limits.maxFollow, NAME_MAX) };
  },
  [Op.Send]: (o) => {
    const id = msgId(o);
    if (o.room !== undefined && o.to !== undefined) bad('send has either to or room, not both', id);
    const room = o.room === undefined ? undefined : str(o, 'room', NAME_MAX, id);
    const to = room === undefined ? str(o, 'to', NAME_MAX, id) : undefined;
    const text = o.text;
    if (typeof text !== 'string') bad('text must be a string', id);
    // A JS string is at most 3 UTF-8 bytes per UTF-16 unit and at least 1: only a text between those bounds
    // needs the exact count (a short text, the usual case, is never counted).
    if (text.length > Limits.maxTextBytes || (text.length > TEXT_SURELY_FITS && utf8Length(text) > Limits.maxTextBytes)) {
      throw new ProtocolError('TEXT_TOO_LONG', `text is over ${Limits.maxTextBytes} bytes of UTF-8`, id);
    }
    // A first unit that is printable ASCII other than space is not whitespace: only other texts need trim().
    const c0 = text.charCodeAt(0);
    if (!(c0 > 0x20 && c0 < 0x7f) && text.trim().length === 0) throw new ProtocolError('TEXT_EMPTY', 'text is empty', id);
    return room === undefined ? { t: Op.Send, id, to: to!, text } : { t: Op.Send, id, room, text };
  },
  [Op.Ack]: (o) => {
    const tags = o.tags;
    if (!Array.isArray(tags) || tags.length === 0 || tags.length > Limits.maxAckTags) {
      bad(`tags must be an array of 1..${Limits.maxAckTags} delivery tags`);
    }
    for (const tag of tags) if (typeof tag !== 'number' || !Number.isSafeInteger(tag) || tag < 0) bad('bad tag');
    return { t: Op.Ack, tags: tags as number[] };
  },
  [Op.Follow]: (o) => ({ t: Op.Follow, names: strList(o, 'names', Limits.maxFollow, NAME_MAX) }),
  [Op.Ping]: (o) => (o.n === undefined ? { t: Op.Ping } : { t: Op.Ping, n: uint(o, 'n') }),
  [Op.Read]: (o) => {
    const ids = o.ids;
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > Limits.maxReadIds) bad(`ids must be an array of 1..${Limits.maxReadIds} message ids`);
    for (const id of ids) msgId({ id });
    return { t: Op.Read, to: str(o, 'to', NAME_MAX), ids: ids as string[] };
  },
  [Op.Typing]: (o) => {
    if (typeof o.on !== 'boolean') bad('on must be a boolean');
    return { t: Op.Typing, to: str(o, 'to', NAME_MAX), on: o.on };
  },
  [Op.StreamOffer]: (o) => {
    // The ref becomes the transfer's id (`tid`), which names the recipient's file on disk: id characters only.
    const ref = transferId(o, 'ref');
    return {
      t: Op.StreamOffer,
      ref,
      to: str(o, 'to', NAME_MAX, ref),
      name: str(o, 'name', Limits.maxFileNameChars * 2, ref),
      size: uint(o, 'size'),
      mime: str(o, 'mime', Limits.maxCodecChars, ref),
      container: str(o, 'container', 16, ref),
    };
  },
  [Op.StreamAnswer]: (o) => {
    if (typeof o.accept !== 'boolean') bad('accept must be a boolean');
    const f = { t: Op.StreamAnswer, sid: uint(o, 'sid', 0xffffffff), accept: o.accept } as const;
    return o.credit === undefined ? f : { ...f, credit: uint(o, 'credit') };
  },
  [Op.StreamCredit]: (o) => ({ t: Op.StreamCredit, sid: uint(o, 'sid', 0xffffffff), bytes: uint(o, 'bytes') }),
  [Op.StreamEnd]: (o) => ({ t: Op.StreamEnd, sid: uint(o, 'sid', 0xffffffff) }),
  [Op.RoomCreate]: (o) => {
    const room = str(o, 'room', NAME_MAX);
    if (o.private !== undefined && typeof o.private !== 'boolean') bad('private must be a boolean');
    return o.private === undefined ? { t: Op.RoomCreate, room } : { t: Op.RoomCreate, room, private: o.private };
  },
  [Op.RoomJoin]: (o) => ({ t: Op.RoomJoin, room: str(o, 'room', NAME_MAX) }),
  [Op.RoomLeave]: (o) => ({ t: Op.RoomLeave, room: str(o, 'room', NAME_MAX) }),
  [Op.RoomInvite]: (o) => ({ t: Op.RoomInvite, room: str(o, 'room', NAME_MAX), name: str(o, 'name', NAME_MAX) }),
  [Op.RoomRemove]: (o) => ({ t: Op.RoomRemove, room: str(o, 'room', NAME_MAX), name: str(o, 'name', NAME_MAX) }),
  [Op.RoomList]: () => ({ t: Op.RoomList }),
  [Op.RoomOwner]: (o) => ({ t: Op.RoomOwner, room: str(o, 'room', NAME_MAX), name: str(o, 'name', NAME_MAX) }),
  [Op.RoomMembers]: (o) => ({ t: Op.RoomMembers, room: str(o, 'room', NAME_MAX) }),
  [Op.RoomWho]: (o) => ({ t: Op.RoomWho, room: str(o, 'room', NAME_MAX), id: msgId(o) }),
  [Op.StreamCancel]: (o) => {
    const sid = uint(o, 'sid', 0xffffffff);
    return o.reason === undefined ? { t: Op.StreamCancel, sid } : { t: Op.StreamCancel, sid, reason: str(o, 'reason', 200) };
  },
  [Op.StreamResume]: (o) => {
    const tid = transferId(o, 'tid');
    const f = { t: Op.StreamResume, tid, from: str(o, 'from', NAME_MAX, tid), held: byteRanges(o, 'held', tid) } as const;
    return o.credit === undefined ? f : { ...f, credit: uint(o, 'credit') };
  },
  [Op.StreamDrop]: (o) => {
    const tid = transferId(o, 'tid');
    return { t: Op.StreamDrop, tid, peer: str(o, 'peer', NAME_MAX, tid) };
  },
};

function unpackMap(bytes: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = unpackr.unpack(bytes);
  } catch {
    bad('not valid msgpack');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) bad('frame must be a msgpack map');
  return v as Record<string, unknown>;
}

/**
 * Decodes and validates one binary frame from a client. Throws ProtocolError with a code on anything that is
 * not a well-formed frame of a known type. Does not check meaning (who may send what): that is the core's job.
 */
export function decodeClientFrame(bytes: Uint8Array): ClientFrame | ChunkFrame {
  if (bytes.byteLength === 0) bad('empty frame');
  if (bytes[0] === CHUNK_TAG) {
    const header = readChunkHeader(bytes);
    if (!header) bad('malformed chunk header');
    return { t: 'chunk', header, bytes };
  }
  if (bytes.byteLength > Limits.maxControlFrameBytes) {
    throw new ProtocolError('TOO_LARGE', `control frames are limited to ${Limits.maxControlFrameBytes} bytes`);
  }
  // `send` and `ack` are read by hand when they have exactly the shape clients send; anything else is decoded
  // the general way. Both give the same plain object to the same validator below.
  const o = readHotClientFrame(bytes) ?? unpackMap(bytes);
  const t = o.t;
  const validate = typeof t === 'number' ? clientValidators[t] : undefined;
  if (!validate) throw new ProtocolError('UNKNOWN_TYPE', `unknown frame type ${JSON.stringify(t)?.slice(0, 20)}`);
  return validate(o);
}

const serverOps = new Set<number>([
  Op.Welcome, Op.Receipt, Op.Message, Op.Presence, Op.Error, Op.Takeover, Op.Pong, Op.Shutdown, Op.ReadBy, Op.TypingFrom,
  Op.StreamOffered, Op.StreamAnswered, Op.StreamGranted, Op.StreamEnded, Op.StreamAborted,
  Op.StreamResumed, Op.StreamResumable, Op.StreamDropped,
  Op.RoomInfo, Op.RoomListed, Op.RoomReceipt, Op.RoomWhoIs, Op.RoomPresence, Op.RoomGone, Op.RoomInvited,
]);

/**
 * The client's decoder for what the server sends. The server is trusted more than clients are, but a client
 * still refuses frames it cannot understand rather than acting on garbage.
 */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame | ChunkFrame {
  if (bytes.byteLength > 0 && bytes[0] === CHUNK_TAG) {
    const header = readChunkHeader(bytes);
    if (!header) bad('malformed chunk header');
    return { t: 'chunk', header, bytes };
  }
  const o = unpackMap(bytes);
  if (typeof o.t !== 'number' || !serverOps.has(o.t)) {
    throw new ProtocolError('UNKNOWN_TYPE', `unknown server frame type ${String(o.t).slice(0, 20)}`);
  }
  return o as unknown as ServerFrame;
}

