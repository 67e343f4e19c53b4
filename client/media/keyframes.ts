/**
 * Keyframe times of a fragmented MP4 or WebM byte stream, learned from the bytes as they are appended.
 *
 * Why: `SourceBuffer.remove(0, t)` also removes every frame up to the next keyframe after `t` (those frames
 * cannot be decoded without the removed ones). Removing up to an arbitrary time can therefore take away the
 * frames being played when keyframes are far apart (a regular MP4 often has one every 10 s, screen recordings
 * far fewer). Removing only up to a known keyframe removes nothing more than asked.
 *
 * The parsers walk box / element headers across chunk boundaries, keep only a few bytes between chunks
 * (plus the small `moof` / header elements they read whole) and skip media payloads without copying them.
 */

export interface KeyframeIndex {
  /** Feeds the next bytes of the stream, in order. Never throws on odd input: it just stops learning. */
  push(bytes: Uint8Array): void;
  /** The latest known keyframe presentation time (seconds) at or before `t`, if any. */
  keyframeAtOrBefore(t: number): number | undefined;
  /** Forgets keyframes before `t` (they have been removed from the buffer). */
  forgetBefore(t: number): void;
}

/** Header or element bodies we read whole; anything bigger is skipped (and its keyframes not learned). */
const MAX_CAPTURE = 4 * 1024 * 1024;

class Times {
  private times: number[] = [];

  add(t: number): void {
    if (!Number.isFinite(t)) return;
    const last = this.times[this.times.length - 1];
    if (last === undefined || t > last) this.times.push(t);
    else if (t < last) {
      // Out of order (B-frame reordering, or a range earlier in time): insert sorted.
      const i = this.lowerBound(t);
      if (this.times[i] !== t) this.times.splice(i, 0, t);
    }
  }

  /** Index of the first time >= t (times.length when none). */
  private lowerBound(t: number): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.times[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  atOrBefore(t: number): number | undefined {
    const i = this.lowerBound(t);
    return this.times[i] === t ? t : this.times[i - 1];
  }

  forgetBefore(t: number): void {
    this.times.splice(0, this.lowerBound(t));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Walks a byte stream made of length-prefixed units, carrying partial headers and captured bodies across
 * chunks. `header` parses a unit header at an index (undefined: need more bytes); `visit` decides what to do.
 */
abstract class StreamWalker {
  private pending: Uint8Array = new Uint8Array(0);
  /** Absolute stream offset of pending[0]. */
  private base = 0;
  /** Absolute offset up to which bytes are skipped unseen. */
  private skipTo = 0;
  private dead = false;

  push(bytes: Uint8Array): void {
    if (this.dead) return;
    let data = concat(this.pending, bytes);
    let base = this.base;
    try {
      for (;;) {
        const i = this.skipTo - base;
        if (i >= data.length) {
          base += data.length;
          data = new Uint8Array(0);
          break;
        }
        const at = Math.max(0, i);
        const step = this.step(data, at, base + at);
        if (step === 'more') {
          base += at;
          data = data.slice(at);
          break;
        }
        this.skipTo = step;
      }
    } catch {
      // Malformed input: stop indexing; the player then simply evicts nothing itself.
      this.dead = true;
    }
    this.pending = data;
    this.base = base;
  }

  /** Handles the unit at data[at] (absolute offset abs). Returns the absolute offset to continue at, or 'more'. */
  protected abstract step(data: Uint8Array, at: number, abs: number): number | 'more';
}

// --------------------------------------------------------------------------------------------------------
// Fragmented MP4

interface TrackInfo {
  timescale: number;
  video: boolean;
  defaultDuration: number;
  defaultFlags: number;
}

function u32(d: Uint8Array, i: number): number {
  return ((d[i]! << 24) >>> 0) + (d[i + 1]! << 16) + (d[i + 2]! << 8) + d[i + 3]!;
}

function i32(d: Uint8Array, i: number): number {
  return (d[i]! << 24) | (d[i + 1]! << 16) | (d[i + 2]! << 8) | d[i + 3]!;
}

function u64(d: Uint8Array, i: number): number {
  return u32(d, i) * 2 ** 32 + u32(d, i + 4);
}

function type4(d: Uint8Array, i: number): string {
  return String.fromCharCode(d[i]!, d[i + 1]!, d[i + 2]!, d[i + 3]!);
}

/** Child boxes of a container body d[start, end). */
function* boxes(d: Uint8Array, start: number, end: number): Generator<{ type: string; body: number; end: number }> {
  let i = start;
  while (i + 8 <= end) {
    let size = u32(d, i);
    let header = 8;
    if (size === 1) {
      size = u64(d, i + 8);
      header = 16;
    } else if (size === 0) size = end - i;
    if (size < header || i + size > end) return;
    yield { type: type4(d, i + 4), body: i + header, end: i + size };
    i += size;
  }
}

const SAMPLE_NON_SYNC = 0x00010000;

class Mp4Keyframes extends StreamWalker implements KeyframeIndex {
  private times = new Times();
  private tracks = new Map<number, TrackInfo>();

  protected step(d: Uint8Array, at: number, abs: number): number | 'more' {
    if (at + 16 > d.length) return 'more';
    let size = u32(d, at);
    const type = type4(d, at + 4);
    if (size === 1) size = u64(d, at + 8);
    else if (size === 0) return Infinity;
    if (size < 8) throw new Error('bad box');
    if ((type === 'moov' || type === 'moof') && size <= MAX_CAPTURE) {
      if (at + size > d.length) return 'more';
      if (type === 'moov') this.readMoov(d, at + 8, at + size);
      else this.readMoof(d, at + 8, at + size);
    }
    return abs + size;
  }

  private readMoov(d: Uint8Array, start: number, end: number): void {
    for (const b of boxes(d, start, end)) {
      if (b.type === 'trak') this.readTrak(d, b.body, b.end);
      if (b.type === 'mvex') {
        for (const t of boxes(d, b.body, b.end)) {
          if (t.type !== 'trex') continue;
          const track = this.tracks.get(u32(d, t.body + 4));
          if (track) {
            track.defaultDuration = u32(d, t.body + 12);
            track.defaultFlags = u32(d, t.body + 20);
          }
        }
      }
    }
  }

  private readTrak(d: Uint8Array, start: number, end: number): void {
    let id = 0;
    const info: TrackInfo = { timescale: 0, video: false, defaultDuration: 0, defaultFlags: 0 };
    for (const b of boxes(d, start, end)) {
      if (b.type === 'tkhd') id = u32(d, b.body + (d[b.body] === 1 ? 20 : 12));
      if (b.type !== 'mdia') continue;
      for (const m of boxes(d, b.body, b.end)) {
        if (m.type === 'mdhd') info.timescale = u32(d, m.body + (d[m.body] === 1 ? 20 : 12));
        if (m.type === 'hdlr') info.video = type4(d, m.body + 8) === 'vide';
      }
    }
    if (id && info.timescale) this.tracks.set(id, info);
  }

  /** The track whose keyframes matter: the video track, or the only track of an audio-only file. */
  private indexed(id: number): TrackInfo | undefined {
    const track = this.tracks.get(id);
    if (!track) return undefined;
    const hasVideo = [...this.tracks.values()].some((t) => t.video);
    return track.video || !hasVideo ? track : undefined;
  }

  private readMoof(d: Uint8Array, start: number, end: number): void {
    for (const traf of boxes(d, start, end)) {
      if (traf.type !== 'traf') continue;
      let track: TrackInfo | undefined;
      let duration = 0;
      let flags = 0;
      let time: number | undefined;
      for (const b of boxes(d, traf.body, traf.end)) {
        if (b.type === 'tfhd') {
          const tf = u32(d, b.body) & 0xffffff;
          track = this.indexed(u32(d, b.body + 4));
          if (!track) break;
          duration = track.defaultDuration;
          flags = track.defaultFlags;
          let i = b.body + 8;
          if (tf & 0x01) i += 8;
          if (tf & 0x02) i += 4;
          if (tf & 0x08) { duration = u32(d, i); i += 4; }
          if (tf & 0x10) i += 4;
          if (tf & 0x20) flags = u32(d, i);
        } else if (b.type === 'tfdt' && track) {
          time = d[b.body] === 1 ? u64(d, b.body + 4) : u32(d, b.body + 4);
        } else if (b.type === 'trun' && track && time !== undefined) {
          time = this.readTrun(d, b.body, track, time, duration, flags);
        }
      }
    }
  }

  /** Records the sync samples of one run; returns the decode time after it. */
  private readTrun(d: Uint8Array, body: number, track: TrackInfo, time: number, duration: number, flags: number): number {
    const version = d[body]!;
    const tf = u32(d, body) & 0xffffff;
    const count = u32(d, body + 4);
    let i = body + 8;
    if (tf & 0x01) i += 4;
    let firstFlags: number | undefined;
    if (tf & 0x04) { firstFlags = u32(d, i); i += 4; }
    for (let n = 0; n < count; n++) {
      let dur = duration;
      let f = n === 0 && firstFlags !== undefined ? firstFlags : flags;
      let cto = 0;
      if (tf & 0x100) { dur = u32(d, i); i += 4; }
      if (tf & 0x200) i += 4;
      if (tf & 0x400) { f = u32(d, i); i += 4; }
      if (tf & 0x800) { cto = version === 0 ? u32(d, i) : i32(d, i); i += 4; }
      if (!(f & SAMPLE_NON_SYNC)) this.times.add((time + cto) / track.timescale);
      time += dur;
    }
    return time;
  }

  keyframeAtOrBefore(t: number): number | undefined {
    return this.times.atOrBefore(t);
  }

  forgetBefore(t: number): void {
    this.times.forgetBefore(t);
  }
}

// --------------------------------------------------------------------------------------------------------
// WebM

const EL = {
  Segment: 0x18538067,
  Info: 0x1549a966,
  TimestampScale: 0x2ad7b1,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackNumber: 0xd7,
  TrackType: 0x83,
  Cluster: 0x1f43b675,
  Timestamp: 0xe7,
  SimpleBlock: 0xa3,
  BlockGroup: 0xa0,
  Block: 0xa1,
  ReferenceBlock: 0xfb,
} as const;

interface Vint { value: number; length: number; unknown: boolean }

function vint(d: Uint8Array, i: number, keepMarker: boolean): Vint | undefined {
  const first = d[i];
  if (first === undefined) return undefined;
  if (first === 0) throw new Error('bad vint');
  const length = Math.clz32(first) - 23;
  if (i + length > d.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> length);
  let unknown = !keepMarker && value === 0xff >> length;
  for (let k = 1; k < length; k++) {
    const b = d[i + k]!;
    if (b !== 0xff) unknown = false;
    value = value * 256 + b;
  }
  return { value, length, unknown };
}

class WebmKeyframes extends StreamWalker implements KeyframeIndex {
  private times = new Times();
  private scale = 1e-3; // TimestampScale default: 1,000,000 ns per tick.
  private videoTracks = new Set<number>();
  private anyVideo = false;
  private clusterTime = 0;
  /** Block of the open BlockGroup: [track, time] until we know whether a ReferenceBlock follows. */
  private group: { end: number; track: number; time: number; referenced: boolean } | undefined;

  protected step(d: Uint8Array, at: number, abs: number): number | 'more' {
    if (this.group && abs >= this.group.end) this.closeGroup();
    const id = vint(d, at, true);
    if (!id) return 'more';
    const size = vint(d, at + id.length, false);
    if (!size) return 'more';
    const body = at + id.length + size.length;
    const bodyAbs = abs + id.length + size.length;
    const end = size.unknown ? Infinity : bodyAbs + size.value;
    switch (id.value) {
      case EL.Segment:
      case EL.Cluster:
        // Descend: their children (blocks, timestamps) are what we read. Works for unknown sizes too.
        return bodyAbs;
      case EL.BlockGroup:
        this.group = { end, track: 0, time: 0, referenced: false };
        return bodyAbs;
      case EL.Info:
      case EL.Tracks:
      case EL.Timestamp: {
        if (size.unknown || size.value > MAX_CAPTURE) return end;
        if (body + size.value > d.length) return 'more';
        this.readWhole(id.value, d, body, body + size.value);
        return end;
      }
      case EL.SimpleBlock:
      case EL.Block: {
        if (body + 4 > d.length) return 'more';
        const track = vint(d, body, false);
        if (!track || body + track.length + 3 > d.length) return 'more';
        const rel = (d[body + track.length]! << 24 >> 16) | d[body + track.length + 1]!;
        const time = (this.clusterTime + rel) * this.scale;
        if (id.value === EL.SimpleBlock) {
          if (d[body + track.length + 2]! & 0x80) this.keyframe(track.value, time);
        } else if (this.group) {
          this.group.track = track.value;
          this.group.time = time;
        }
        return end;
      }
      case EL.ReferenceBlock:
        if (this.group) this.group.referenced = true;
        return end;
      default:
        return end;
    }
  }

  private closeGroup(): void {
    const g = this.group;
    this.group = undefined;
    if (g && g.track && !g.referenced) this.keyframe(g.track, g.time);
  }

  private keyframe(track: number, seconds: number): void {
    if (!this.anyVideo || this.videoTracks.has(track)) this.times.add(seconds);
  }

  private readWhole(id: number, d: Uint8Array, start: number, end: number): void {
    const uint = (s: number, e: number) => {
      let v = 0;
      for (let i = s; i < e; i++) v = v * 256 + d[i]!;
      return v;
    };
    if (id === EL.Timestamp) {
      this.clusterTime = uint(start, end);
      return;
    }
    // Walk the children of Info or Tracks (and TrackEntry inside Tracks).
    const walk = (s: number, e: number, visit: (id: number, bs: number, be: number) => void) => {
      let i = s;
      while (i < e) {
        const cid = vint(d, i, true);
        const cs = cid && vint(d, i + cid.length, false);
        if (!cid || !cs || cs.unknown) return;
        const bs = i + cid.length + cs.length;
        visit(cid.value, bs, Math.min(e, bs + cs.value));
        i = bs + cs.value;
      }
    };
    if (id === EL.Info) {
      walk(start, end, (cid, bs, be) => {
        if (cid === EL.TimestampScale) this.scale = uint(bs, be) / 1e9;
      });
      return;
    }
    walk(start, end, (cid, bs, be) => {
      if (cid !== EL.TrackEntry) return;
      let number = 0;
      let type = 0;
      walk(bs, be, (fid, fs, fe) => {
        if (fid === EL.TrackNumber) number = uint(fs, fe);
        if (fid === EL.TrackType) type = uint(fs, fe);
      });
      if (type === 1) {
        this.videoTracks.add(number);
        this.anyVideo = true;
      }
    });
  }

  keyframeAtOrBefore(t: number): number | undefined {
    return this.times.atOrBefore(t);
  }

  forgetBefore(t: number): void {
    this.times.forgetBefore(t);
  }
}

/** A keyframe index for the byte stream of `container`; undefined when we cannot index it. */
export function createKeyframeIndex(container: string): KeyframeIndex | undefined {
  if (container === 'fmp4') return new Mp4Keyframes();
  if (container === 'webm') return new WebmKeyframes();
  return undefined;
}
