/**
 * The sender's half of "watch while it arrives": look at a file, name its container and exact codecs for the
 * offer, and produce the bytes to send in an order the recipient can play as they come.
 *
 * - WebM: sent as it is (its header comes first and clusters follow in time order); codecs from the header.
 * - Fragmented MP4: sent as it is; codecs from its index, read with mp4box.js.
 * - Regular MP4, index at the start or at the end: re-muxed into fragmented MP4 with mp4box.js.
 * - Anything else: sent as it is, with the file's type; the recipient keeps it and plays or saves it whole.
 *
 * Re-mux memory: the declared size must equal the bytes sent, and fragmenting changes the size, so the
 * re-mux runs twice: once to count its bytes (in `prepare()`), once to produce them (in `chunks()`). Each
 * pass holds only a few slices of the file (`readBytes` each, default 512 KiB), the sample data of the
 * segments in progress and the index mp4box builds from `moov` (tens of bytes per sample, a few MB for a
 * feature film); never the whole file. The price is reading and re-muxing the file twice (CPU, not memory).
 * Both passes must produce the same bytes; `chunks()` throws if they differ rather than send a wrong size.
 */
import { codecString, isWebmCodec, readMatroskaInfo, type MatroskaInfo } from './ebml.ts';
import { probeMp4, remuxMp4, type RemuxOptions } from './mp4.ts';

/**
 * What the bytes on the wire are. `fmp4` covers both a file that was fragmented already and a re-muxed one;
 * `mp4` is a regular MP4 sent unchanged because it could not be re-muxed (the recipient plays it whole).
 */
export type Container = 'fmp4' | 'webm' | 'mp4' | 'other';

export interface PreparedStream {
  container: Container;
  /** Full MIME type with codecs when known, e.g. `video/mp4; codecs="avc1.64000d,mp4a.40.2"`. */
  mime: string;
  /** Exact number of bytes `chunks()` yields. */
  size: number;
  /** True when the bytes are a re-mux of a regular MP4 rather than the file itself. */
  remuxed: boolean;
  /** Plain-language note for the sender when the stream is not what they might expect (e.g. re-mux failed). */
  note?: string;
  /** The bytes to send, in order, each chunk at most `chunkBytes`. Each call starts over. */
  chunks(): AsyncIterable<Uint8Array>;
}

export interface PrepareOptions {
  /** Largest chunk yielded (the protocol's chunk limit). Default 256 KiB. */
  chunkBytes?: number;
  /** Bytes read from the file per step while probing or re-muxing. Default 512 KiB. */
  readBytes?: number;
  /** Target media segment length of a re-mux, in seconds. Default 1. */
  segmentSeconds?: number;
}

const DEFAULTS = { chunkBytes: 256 * 1024, readBytes: 512 * 1024, segmentSeconds: 1 } as const;
/** A single re-muxed segment larger than this is cut anyway (even between keyframes). */
const SEGMENT_BYTES = 2 * 1024 * 1024;
/** Longest MIME string the protocol accepts in an offer. */
const MAX_MIME_CHARS = 200;

const ISO_BOX_TYPES = new Set(['ftyp', 'styp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot', 'moof', 'sidx']);

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

type Kind = 'iso' | 'ebml' | 'unknown';

/** What the first bytes say, plus a MIME type to fall back on when the browser gave the file none. */
function sniff(head: Uint8Array): { kind: Kind; mime?: string } {
  if (head.length >= 8 && ISO_BOX_TYPES.has(ascii(head, 4, 8))) {
    const qt = ascii(head, 4, 8) === 'ftyp' && ascii(head, 8, 12) === 'qt  ';
    return { kind: 'iso', mime: qt ? 'video/quicktime' : 'video/mp4' };
  }
  if (head.length >= 4 && head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) {
    return { kind: 'ebml', mime: 'video/x-matroska' };
  }
  if (head.length >= 12 && ascii(head, 0, 4) === 'RIFF' && ascii(head, 8, 12) === 'AVI ') {
    return { kind: 'unknown', mime: 'video/x-msvideo' };
  }
  if (head.length >= 4 && ascii(head, 0, 4) === 'OggS') return { kind: 'unknown', mime: 'video/ogg' };
  return { kind: 'unknown' };
}

/** Yields `file` as it is, in chunks of at most `chunkBytes`. */
async function* fileChunks(file: Blob, chunkBytes: number): AsyncGenerator<Uint8Array, void, undefined> {
  for (let pos = 0; pos < file.size; pos += chunkBytes) {
    yield new Uint8Array(await file.slice(pos, Math.min(file.size, pos + chunkBytes)).arrayBuffer());
  }
}

/** Cuts a stream of byte arrays into chunks of at most `max` bytes (views, no copies). */
async function* capChunks(source: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const bytes of source) {
    for (let at = 0; at < bytes.length; at += max) yield bytes.subarray(at, Math.min(bytes.length, at + max));
  }
}

function passthrough(file: Blob, container: Container, mime: string, chunkBytes: number, note?: string): PreparedStream {
  const stream: PreparedStream = {
    container, mime, size: file.size, remuxed: false,
    chunks: () => fileChunks(file, chunkBytes),
  };
  if (note) stream.note = note;
  return stream;
}

function baseType(file: Blob, sniffed?: string): string {
  return file.type || sniffed || 'application/octet-stream';
}

function matroskaStream(file: Blob, info: MatroskaInfo, chunkBytes: number): PreparedStream {
  const media = info.tracks.filter((t) => t.type === 1 || t.type === 2);
  const codecs = media.map(codecString);
  const known = codecs.every((c) => c !== undefined) && codecs.length > 0 ? codecs as string[] : undefined;
  const kind = media.some((t) => t.type === 1) || media.length === 0 ? 'video' : 'audio';
  // MediaSource takes a WebM byte stream. Chromium's also takes Matroska that carries only WebM codecs (an
  // .mkv of VP9/Opus); a browser that refuses it makes the player fall back to a Blob, so offer it as WebM.
  // Matroska with other codecs (H.264, AAC, ...) goes whole, as `other`.
  if ((known && known.every(isWebmCodec)) || (info.docType === 'webm' && !known)) {
    const mime = known ? `${kind}/webm; codecs="${known.join(',')}"` : `${kind}/webm`;
    return passthrough(file, 'webm', mime, chunkBytes);
  }
  const base = file.type || `${kind}/x-matroska`;
  return passthrough(file, 'other', known ? `${base}; codecs="${known.join(',')}"` : base, chunkBytes);
}

async function mp4Stream(file: Blob, opts: Required<PrepareOptions>): Promise<PreparedStream> {
  const info = await probeMp4(file, opts.readBytes);
  if (!info) return passthrough(file, 'other', baseType(file, 'video/mp4'), opts.chunkBytes);
  if (info.fragmented) return passthrough(file, 'fmp4', info.mime, opts.chunkBytes);

  const remux: RemuxOptions = { readBytes: opts.readBytes, segmentSeconds: opts.segmentSeconds, segmentBytes: SEGMENT_BYTES };
  let size = 0;
  try {
    for await (const bytes of remuxMp4(file, remux)) size += bytes.length;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return passthrough(file, 'mp4', info.mime, opts.chunkBytes,
      `This MP4 could not be prepared for playback while it arrives (${why}); it is sent as it is and plays once complete.`);
  }
  return {
    container: 'fmp4', mime: info.mime, size, remuxed: true,
    chunks: async function* () {
      let sent = 0;
      for await (const chunk of capChunks(remuxMp4(file, remux), opts.chunkBytes)) {
        sent += chunk.length;
        if (sent > size) throw new Error(`MP4 re-mux produced more than the ${size} bytes it declared`);
        yield chunk;
      }
      if (sent !== size) throw new Error(`MP4 re-mux produced ${sent} bytes, not the ${size} it declared`);
    },
  };
}

/**
 * Works out how to send `file` so the recipient can play it while it arrives. Reads only the parts of the
 * file it needs, except for a regular MP4, which it re-muxes once to learn the exact size (see the memory
 * note at the top of this file).
 */
export async function prepare(file: Blob, options: PrepareOptions = {}): Promise<PreparedStream> {
  const opts: Required<PrepareOptions> = { ...DEFAULTS, ...options };
  if (!(opts.chunkBytes > 0) || !(opts.readBytes > 0) || !(opts.segmentSeconds > 0)) {
    throw new RangeError('prepare(): chunkBytes, readBytes and segmentSeconds must be positive');
  }
  const head = new Uint8Array(await file.slice(0, 64).arrayBuffer());
  const sniffed = sniff(head);
  let prepared: PreparedStream;
  if (sniffed.kind === 'iso') {
    prepared = await mp4Stream(file, opts);
  } else if (sniffed.kind === 'ebml') {
    const readAt = async (offset: number, length: number) =>
      new Uint8Array(await file.slice(offset, offset + length).arrayBuffer());
    const info = await readMatroskaInfo(readAt, file.size);
    prepared = info
      ? matroskaStream(file, info, opts.chunkBytes)
      : passthrough(file, 'other', baseType(file, sniffed.mime), opts.chunkBytes);
  } else {
    prepared = passthrough(file, 'other', baseType(file, sniffed.mime), opts.chunkBytes);
  }
  // A codec list too long for the offer (many tracks) is dropped rather than truncated into nonsense.
  if (prepared.mime.length > MAX_MIME_CHARS) prepared.mime = prepared.mime.split(';')[0]!.trim();
  return prepared;
}
