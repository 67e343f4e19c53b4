/**
 * The sender's half of "watch while it arrives": look at a file, name its kind, container and exact codecs
 * for the offer, and say in which order to send its bytes. The bytes sent are always the file's own, every
 * one exactly once, so what the recipient saves is the file itself (same size, same SHA-256).
 *
 * - WebM (and Matroska with WebM codecs), fragmented MP4, MP3: sent in file order; MediaSource takes them as
 *   they come.
 * - Regular MP4 / MOV / M4A: the index (`moov`) first when it sits after the media data, then the rest in
 *   file order. The recipient re-muxes what has arrived into fragmented MP4 for MediaSource on its side
 *   (client/media/mp4.ts reading its file store), so playback starts before the last byte.
 * - Anything else (photos, documents, ...): in file order; the recipient shows or offers it once complete.
 *
 * Preparation reads only the first bytes and the boxes' headers (and the index, to learn the codecs):
 * never the whole file, and each part of it once (test/unit/prepare.test.ts counts). Every read goes through
 * one reader that reports progress (how far into the file it has looked) and stops at the caller's signal, so
 * a large index on a slow disk shows progress and can be cancelled.
 */
import { codecString, isWebmCodec, readMatroskaInfo, type MatroskaInfo } from './ebml.ts';
import { kindOf, type FileKind } from './kind.ts';
import { probeMp4 } from './mp4.ts';

/**
 * How the recipient reads the bytes: `fmp4` fragmented MP4, `mp4` a regular MP4 (re-muxed by the recipient),
 * `webm`, `mpeg` an MP3 stream, `other` anything else (kept whole).
 */
export type Container = 'fmp4' | 'mp4' | 'webm' | 'mpeg' | 'other';

export type { FileKind } from './kind.ts';

export interface PreparedFile {
  container: Container;
  kind: FileKind;
  /** Full MIME type with codecs when known, e.g. `video/mp4; codecs="avc1.64000d,mp4a.40.2"`. */
  mime: string;
  /** The file's size: exactly the bytes sent. */
  size: number;
  /** The byte ranges to send, in order; together they cover the file once. */
  ranges: [number, number][];
}

export interface PrepareOptions {
  /** Bytes read from the file per step while probing an MP4's index. Default 512 KiB. */
  readBytes?: number;
  /** Stops preparation: the pending read finishes, then prepare() rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Called after each read with the furthest byte looked at so far and the file's size (a file with its index
   * at the end jumps there early; a large index at the start advances step by step).
   */
  onProgress?: (at: number, size: number) => void;
  /** Reads no faster than this many bytes per second (the page's test knob for a slow disk). 0: no limit. */
  rate?: number;
}

const DEFAULTS = { readBytes: 512 * 1024, rate: 0 } as const;

interface Opts { readBytes: number; signal: AbortSignal | undefined; onProgress: PrepareOptions['onProgress']; rate: number }
/** Longest MIME string the protocol accepts in an offer. */
const MAX_MIME_CHARS = 200;

const ISO_BOX_TYPES = new Set(['ftyp', 'styp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot', 'moof', 'sidx']);

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

type Kind = 'iso' | 'ebml' | 'mpeg' | 'unknown';

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
  if (head.length >= 4 && ascii(head, 0, 4) === 'OggS') return { kind: 'unknown', mime: 'audio/ogg' };
  if (head.length >= 8 && head[0] === 0x89 && ascii(head, 1, 4) === 'PNG') return { kind: 'unknown', mime: 'image/png' };
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return { kind: 'unknown', mime: 'image/jpeg' };
  if (head.length >= 6 && ascii(head, 0, 4) === 'GIF8') return { kind: 'unknown', mime: 'image/gif' };
  if (head.length >= 12 && ascii(head, 0, 4) === 'RIFF' && ascii(head, 8, 12) === 'WEBP') return { kind: 'unknown', mime: 'image/webp' };
  if (head.length >= 5 && ascii(head, 0, 5) === '%PDF-') return { kind: 'unknown', mime: 'application/pdf' };
  if (head.length >= 3 && ascii(head, 0, 3) === 'ID3') return { kind: 'mpeg', mime: 'audio/mpeg' };
  // An MPEG audio frame header: 11 sync bits, layer III.
  if (head.length >= 2 && head[0] === 0xff && (head[1]! & 0xe6) === 0xe2) return { kind: 'mpeg', mime: 'audio/mpeg' };
  return { kind: 'unknown' };
}

function whole(file: Blob, container: Container, mime: string): PreparedFile {
  return { container, kind: kindOf(mime), mime, size: file.size, ranges: file.size > 0 ? [[0, file.size]] : [] };
}

async function readAt(file: Blob, offset: number, length: number): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(offset, Math.min(file.size, offset + length)).arrayBuffer());
}

/**
 * The one door to the file during preparation: a Blob-like source whose reads check the signal, wait out the
 * rate knob and report progress. Reading the same bytes twice would show here first.
 */
function watched(file: Blob, opts: Opts): Blob {
  const started = performance.now();
  let read = 0;
  let furthest = 0;
  const slice = (start: number, end: number) => ({
    size: Math.max(0, Math.min(end, file.size) - start),
    arrayBuffer: async (): Promise<ArrayBuffer> => {
      opts.signal?.throwIfAborted();
      const stop = Math.min(end, file.size);
      read += Math.max(0, stop - start);
      if (opts.rate > 0) {
        const wait = started + (read / opts.rate) * 1000 - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        opts.signal?.throwIfAborted();
      }
      const bytes = await file.slice(start, stop).arrayBuffer();
      opts.signal?.throwIfAborted();
      furthest = Math.max(furthest, stop);
      opts.onProgress?.(furthest, file.size);
      return bytes;
    },
  });
  // Only size, type and slice().arrayBuffer() are used by the readers below and by mp4.ts.
  return { size: file.size, type: file.type, slice } as unknown as Blob;
}

/** The top-level boxes of an ISO BMFF file, from their headers only (16 bytes read per box). */
async function topBoxes(file: Blob): Promise<{ type: string; start: number; end: number }[]> {
  const boxes: { type: string; start: number; end: number }[] = [];
  let pos = 0;
  while (pos + 8 <= file.size && boxes.length < 1000) {
    const h = await readAt(file, pos, 16);
    const view = new DataView(h.buffer, h.byteOffset, h.byteLength);
    let size = view.getUint32(0);
    const type = ascii(h, 4, 8);
    if (size === 1 && h.length >= 16) size = Number(view.getBigUint64(8));
    else if (size === 0) size = file.size - pos;
    if (size < 8) break;
    boxes.push({ type, start: pos, end: Math.min(file.size, pos + size) });
    pos += size;
  }
  return boxes;
}

async function mp4File(file: Blob, opts: Opts, sniffedMime: string): Promise<PreparedFile> {
  const info = await probeMp4(file, opts.readBytes);
  if (!info) return whole(file, 'other', file.type || sniffedMime);
  const base = info.mime.split(';')[0]!;
  // Keep what the file says it is (QuickTime, M4A) for Save; MediaSource gets the codecs either way.
  const mime = info.mime;
  if (info.fragmented) return { ...whole(file, 'fmp4', mime), kind: kindOf(base) };
  const boxes = await topBoxes(file);
  const moov = boxes.find((b) => b.type === 'moov');
  const firstMdat = boxes.find((b) => b.type === 'mdat');
  const prepared = whole(file, 'mp4', mime);
  if (moov && firstMdat && moov.start > firstMdat.start) {
    // Index at the end: send it first, then everything before it, then anything after it.
    prepared.ranges = [[moov.start, moov.end], [0, moov.start], [moov.end, file.size]]
      .filter(([a, b]) => b! > a!) as [number, number][];
  }
  return prepared;
}

function baseType(file: Blob, sniffed?: string): string {
  return file.type || sniffed || 'application/octet-stream';
}

function matroskaFile(file: Blob, info: MatroskaInfo): PreparedFile {
  const media = info.tracks.filter((t) => t.type === 1 || t.type === 2);
  const codecs = media.map(codecString);
  const known = codecs.every((c) => c !== undefined) && codecs.length > 0 ? codecs as string[] : undefined;
  const kind = media.some((t) => t.type === 1) || media.length === 0 ? 'video' : 'audio';
  // MediaSource takes a WebM byte stream. Chromium's also takes Matroska that carries only WebM codecs (an
  // .mkv of VP9/Opus), so offer it as WebM; Matroska with other codecs (H.264, AAC, ...) goes whole.
  if ((known && known.every(isWebmCodec)) || (info.docType === 'webm' && !known)) {
    return whole(file, 'webm', known ? `${kind}/webm; codecs="${known.join(',')}"` : `${kind}/webm`);
  }
  const base = file.type || `${kind}/x-matroska`;
  return whole(file, 'other', known ? `${base}; codecs="${known.join(',')}"` : base);
}

/** Works out the kind, type and sending order of `file`, reading only its head and its index. */
export async function prepare(original: Blob, options: PrepareOptions = {}): Promise<PreparedFile> {
  const opts: Opts = { ...DEFAULTS, ...options, signal: options.signal, onProgress: options.onProgress };
  if (!(opts.readBytes > 0)) throw new RangeError('prepare(): readBytes must be positive');
  const file = watched(original, opts);
  const head = await readAt(file, 0, 64);
  const sniffed = sniff(head);
  let prepared: PreparedFile;
  if (sniffed.kind === 'iso') {
    prepared = await mp4File(file, opts, sniffed.mime ?? 'video/mp4');
  } else if (sniffed.kind === 'ebml') {
    const info = await readMatroskaInfo((offset, length) => readAt(file, offset, length), file.size);
    prepared = info ? matroskaFile(file, info) : whole(file, 'other', baseType(file, sniffed.mime));
  } else if (sniffed.kind === 'mpeg') {
    prepared = whole(file, 'mpeg', 'audio/mpeg');
  } else {
    // The browser names a type from the extension; a "video" that is not one is offered as what it is.
    const claimed = file.type && !/^(video|audio|image)\//.test(file.type) ? file.type : undefined;
    prepared = whole(file, 'other', sniffed.mime ? file.type || sniffed.mime : claimed ?? 'application/octet-stream');
  }
  // A codec list too long for the offer (many tracks) is dropped rather than truncated into nonsense.
  if (prepared.mime.length > MAX_MIME_CHARS) prepared.mime = prepared.mime.split(';')[0]!.trim();
  return prepared;
}

/** The bytes of `file` as the SDK's ranged source, in the prepared order. */
export function rangedSource(file: Blob, prepared: PreparedFile): { ranges: [number, number][]; read(start: number, end: number): Promise<Uint8Array> } {
  return { ranges: prepared.ranges, read: (start, end) => readAt(file, start, end - start) };
}
