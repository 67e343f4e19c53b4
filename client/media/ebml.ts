/**
 * Just enough EBML (Matroska / WebM) reading to learn a file's DocType and its tracks' codecs, so the sender
 * can put an exact codec string in its offer. Reads element headers with small random-access reads and never
 * touches the clusters that hold the media.
 */

/** Reads `length` bytes at `offset`; may return fewer at the end of the file. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

export interface MatroskaTrack {
  /** 1 video, 2 audio, 17 subtitle (Matroska TrackType). */
  type: number;
  codecId: string;
  codecPrivate?: Uint8Array;
}

export interface MatroskaInfo {
  /** `webm` or `matroska` (EBML DocType). */
  docType: string;
  tracks: MatroskaTrack[];
}

const ID = {
  EBML: 0x1a45dfa3,
  DocType: 0x4282,
  Segment: 0x18538067,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackType: 0x83,
  CodecID: 0x86,
  CodecPrivate: 0x63a2,
  Cluster: 0x1f43b675,
} as const;

/** Element bodies we read whole are small (headers, track lists); anything bigger is not a sane file. */
const MAX_BODY = 4 * 1024 * 1024;
/** Top-level elements walked before giving up (SeekHead, Info, Tags, Void, ...). */
const MAX_ELEMENTS = 4096;

interface Header {
  id: number;
  /** Body size in bytes, or -1 for the "unknown size" marker used by live writers. */
  size: number;
  /** Header length in bytes. */
  length: number;
}

/** Parses one element header at `at`; undefined when `bytes` end too soon or the header is invalid. */
function readHeader(bytes: Uint8Array, at: number): Header | undefined {
  const first = bytes[at];
  if (first === undefined || first === 0) return undefined;
  const idLength = Math.clz32(first) - 23;
  if (idLength > 4 || at + idLength > bytes.length) return undefined;
  let id = 0;
  for (let i = 0; i < idLength; i++) id = id * 256 + bytes[at + i]!;
  const sizeAt = at + idLength;
  const sizeFirst = bytes[sizeAt];
  if (sizeFirst === undefined || sizeFirst === 0) return undefined;
  const sizeLength = Math.clz32(sizeFirst) - 23;
  if (sizeAt + sizeLength > bytes.length) return undefined;
  let size = sizeFirst & (0xff >> sizeLength);
  let allOnes = size === 0xff >> sizeLength;
  for (let i = 1; i < sizeLength; i++) {
    const b = bytes[sizeAt + i]!;
    if (b !== 0xff) allOnes = false;
    size = size * 256 + b;
  }
  return { id, size: allOnes ? -1 : size, length: idLength + sizeLength };
}

/** Calls `visit` for each child element in `bytes[start, end)`. */
function children(bytes: Uint8Array, start: number, end: number,
  visit: (h: Header, bodyStart: number, bodyEnd: number) => void): void {
  let at = start;
  while (at < end) {
    const h = readHeader(bytes, at);
    if (!h || h.size < 0) return;
    const bodyStart = at + h.length;
    const bodyEnd = Math.min(end, bodyStart + h.size);
    visit(h, bodyStart, bodyEnd);
    at = bodyStart + h.size;
  }
}

function uint(bytes: Uint8Array, start: number, end: number): number {
  let v = 0;
  for (let i = start; i < end; i++) v = v * 256 + bytes[i]!;
  return v;
}

function text(bytes: Uint8Array, start: number, end: number): string {
  // Strings may be zero-padded.
  return new TextDecoder().decode(bytes.subarray(start, end)).replace(/\0+$/, '');
}

function parseTracks(bytes: Uint8Array): MatroskaTrack[] {
  const tracks: MatroskaTrack[] = [];
  children(bytes, 0, bytes.length, (h, s, e) => {
    if (h.id !== ID.TrackEntry) return;
    const track: MatroskaTrack = { type: 0, codecId: '' };
    children(bytes, s, e, (c, cs, ce) => {
      if (c.id === ID.TrackType) track.type = uint(bytes, cs, ce);
      else if (c.id === ID.CodecID) track.codecId = text(bytes, cs, ce);
      else if (c.id === ID.CodecPrivate) track.codecPrivate = bytes.slice(cs, ce);
    });
    tracks.push(track);
  });
  return tracks;
}

/**
 * Reads the EBML header and the Tracks element of a Matroska/WebM file. Returns undefined when the file is
 * not EBML; returns the DocType with no tracks when Tracks cannot be found before the first Cluster.
 */
export async function readMatroskaInfo(readAt: ReadAt, fileSize: number): Promise<MatroskaInfo | undefined> {
  const head = await readAt(0, 64);
  const ebml = readHeader(head, 0);
  if (!ebml || ebml.id !== ID.EBML || ebml.size < 0 || ebml.size > MAX_BODY) return undefined;
  const ebmlBody = await readAt(ebml.length, ebml.size);
  let docType = 'matroska';
  children(ebmlBody, 0, ebmlBody.length, (h, s, e) => {
    if (h.id === ID.DocType) docType = text(ebmlBody, s, e);
  });
  const info: MatroskaInfo = { docType, tracks: [] };

  let at = ebml.length + ebml.size;
  const segment = readHeader(await readAt(at, 12), 0);
  if (!segment || segment.id !== ID.Segment) return info;
  at += segment.length;
  for (let n = 0; n < MAX_ELEMENTS && at < fileSize; n++) {
    const h = readHeader(await readAt(at, 12), 0);
    if (!h || h.id === ID.Cluster) break;
    if (h.id === ID.Tracks) {
      if (h.size < 0 || h.size > MAX_BODY) break;
      info.tracks = parseTracks(await readAt(at + h.length, h.size));
      break;
    }
    if (h.size < 0) break;
    at += h.length + h.size;
  }
  return info;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function dec2(n: number): string {
  return String(n).padStart(2, '0');
}

/** VP9 CodecPrivate: ID/length/value triples (1 profile, 2 level, 3 bit depth), per the WebM codec registry. */
function vp9Codec(cp: Uint8Array | undefined): string {
  if (!cp) return 'vp9';
  const fields = new Map<number, number>();
  for (let i = 0; i + 2 <= cp.length;) {
    const id = cp[i]!;
    const len = cp[i + 1]!;
    if (len === 1 && i + 2 < cp.length) fields.set(id, cp[i + 2]!);
    i += 2 + len;
  }
  const profile = fields.get(1);
  const level = fields.get(2);
  const depth = fields.get(3);
  if (profile === undefined || !level || !depth) return 'vp9';
  return `vp09.${dec2(profile)}.${dec2(level)}.${dec2(depth)}`;
}

/** AV1 CodecPrivate is an av1C record: profile and level in byte 1, tier and bit depth in byte 2. */
function av1Codec(cp: Uint8Array | undefined): string | undefined {
  if (!cp || cp.length < 3) return undefined;
  const profile = cp[1]! >> 5;
  const level = cp[1]! & 0x1f;
  const tier = cp[2]! >> 7 ? 'H' : 'M';
  const depth = (cp[2]! & 0x20) ? ((cp[2]! & 0x10) ? 12 : 10) : 8;
  return `av01.${profile}.${dec2(level)}${tier}.${dec2(depth)}`;
}

/** AVC CodecPrivate is an avcC record: profile, constraint flags and level in bytes 1-3. */
function avcCodec(cp: Uint8Array | undefined): string | undefined {
  if (!cp || cp.length < 4) return undefined;
  return `avc1.${hex2(cp[1]!)}${hex2(cp[2]!)}${hex2(cp[3]!)}`;
}

/** AAC CodecPrivate is an AudioSpecificConfig: the audio object type in the first 5 (or 11) bits. */
function aacCodec(cp: Uint8Array | undefined): string {
  if (!cp || cp.length < 1) return 'mp4a.40.2';
  let aot = cp[0]! >> 3;
  if (aot === 31 && cp.length > 1) aot = 32 + (((cp[0]! & 7) << 3) | (cp[1]! >> 5));
  return `mp4a.40.${aot}`;
}

/** The RFC 6381 / WebM codec string of a track, or undefined when we do not know how to name it. */
export function codecString(track: MatroskaTrack): string | undefined {
  const id = track.codecId;
  if (id === 'V_VP8') return 'vp8';
  if (id === 'V_VP9') return vp9Codec(track.codecPrivate);
  if (id === 'V_AV1') return av1Codec(track.codecPrivate);
  if (id === 'V_MPEG4/ISO/AVC') return avcCodec(track.codecPrivate);
  if (id === 'A_OPUS') return 'opus';
  if (id === 'A_VORBIS') return 'vorbis';
  if (id === 'A_FLAC') return 'flac';
  if (id === 'A_MPEG/L3') return 'mp3';
  if (id === 'A_AAC') return aacCodec(track.codecPrivate);
  if (id.startsWith('A_AAC/')) return 'mp4a.40.2';
  return undefined;
}

/** Codecs a WebM byte stream may carry (what MediaSource's WebM parser accepts). */
export function isWebmCodec(codec: string): boolean {
  return codec === 'vp8' || codec === 'vp9' || codec.startsWith('vp09.') || codec.startsWith('av01.')
    || codec === 'opus' || codec === 'vorbis';
}
