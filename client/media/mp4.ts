/**
 * MP4 on the sender's side, with mp4box.js: read the index (the `moov` box, wherever it sits) to learn the
 * codecs, and re-mux a regular MP4 into a fragmented one that MediaSource can play while it arrives.
 *
 * The sender can read any part of its own file, so nothing is loaded whole: mp4box is fed slices of the file
 * (`readBytes` each) at the positions it asks for, which is how a file whose index sits at the end is handled
 * (read the head, jump to the index, come back for the samples). Once the index is known, reads follow the
 * track that is furthest behind in time, so segments come out in time order even when the file stores its
 * audio and video far apart, and slices no track needs any more are dropped.
 */
import { createFile, Log, MP4BoxBuffer, type ISOFile, type Movie, type Track } from 'mp4box';
import type { SliceSource } from './file-store.ts';

// mp4box logs through console at its own levels; its errors reach us through onError instead. Its error level
// also complains about boxes it does not know (QuickTime's `©swr`, padding), which are no failure: debug only.
Log.setLogLevel(Log.error);
Log.error = (module: string, msg?: string) => console.debug(`[mp4box ${module}]`, msg);

export interface Mp4Info {
  /** `video/mp4; codecs="avc1.64000d,mp4a.40.2"` (audio/mp4 when there is no video). */
  mime: string;
  /** The index declares movie fragments (mvex): the file can go to MediaSource as it is. */
  fragmented: boolean;
  /** Audio and video tracks: what a re-mux keeps. */
  tracks: Track[];
}

export interface RemuxOptions {
  /** Bytes read from the file per step. */
  readBytes: number;
  /** Target length of one media segment, in seconds. */
  segmentSeconds: number;
  /** Cap on the bytes of one media segment (a very high bit rate file still gets small segments). */
  segmentBytes: number;
}

/** Work that did not converge (a broken index pointing nowhere) stops after reading the file this many times. */
const MAX_READ_FACTOR = 4;

function mediaTracks(info: Movie): Track[] {
  return info.tracks.filter((t) => t.type === 'video' || t.type === 'audio');
}

function mimeOf(tracks: Track[]): string {
  const kind = tracks.some((t) => t.type === 'video') ? 'video' : 'audio';
  return `${kind}/mp4; codecs="${tracks.map((t) => t.codec).join(',')}"`;
}

async function readSlice(file: SliceSource, start: number, end: number): Promise<MP4BoxBuffer> {
  return MP4BoxBuffer.fromArrayBuffer(await file.slice(start, end).arrayBuffer(), start);
}

function failWith(errors: string[]): void {
  if (errors.length > 0) throw new Error(`MP4 parsing failed: ${errors.join('; ')}`);
}

/**
 * Reads just enough of an ISO BMFF file to parse its index. Returns undefined when there is no `moov`
 * (not an MP4, or a truncated one).
 */
export async function probeMp4(file: SliceSource, readBytes: number): Promise<Mp4Info | undefined> {
  const mp4 = createFile();
  const errors: string[] = [];
  let info: Movie | undefined;
  mp4.onError = (module, message) => { errors.push(`${module}: ${message}`); };
  mp4.onReady = (movie) => { info = movie; };
  let pos = 0;
  let read = 0;
  while (!info && pos < file.size && read <= MAX_READ_FACTOR * file.size) {
    const end = Math.min(file.size, pos + readBytes);
    const next = mp4.appendBuffer(await readSlice(file, pos, end));
    read += end - pos;
    failWith(errors);
    pos = typeof next === 'number' && next > pos ? next : end;
  }
  if (!info) return undefined;
  const tracks = mediaTracks(info);
  if (tracks.length === 0) return undefined;
  return { mime: mimeOf(tracks), fragmented: info.isFragmented, tracks };
}

interface Pending {
  /** Presentation order key: decode time of the segment's first sample, in seconds. */
  time: number;
  bytes: Uint8Array;
}

/**
 * Re-muxes a regular (non-fragmented) MP4 into a fragmented MP4 byte stream: the initialisation segment, then
 * media segments of about `segmentSeconds` each, in time order. Yields batches as they are made; the bytes
 * are deterministic for a given file and options, which is what lets `prepare()` count them in a first pass.
 */
export async function* remuxMp4(file: SliceSource, options: RemuxOptions): AsyncGenerator<Uint8Array, void, undefined> {
  // keepMdatData=false: sample bytes are read from our slices directly; mp4box must not copy whole mdats.
  const mp4: ISOFile = createFile();
  const errors: string[] = [];
  const out: Pending[] = [];
  let init: Uint8Array | undefined;
  let tracks: Track[] = [];
  /** First sample number of the segment being built, per track id. */
  const segmentStart = new Map<number, number>();

  mp4.onError = (module, message) => { errors.push(`${module}: ${message}`); };
  mp4.onReady = (info) => {
    tracks = mediaTracks(info);
    if (tracks.length === 0) {
      errors.push('no audio or video track');
      return;
    }
    // mp4box wants the same sample count per segment on every track: size it for the track with the fewest
    // samples per second (usually video), so no track's segments run longer than segmentSeconds.
    const rate = Math.min(...tracks.map((t) => {
      const seconds = t.duration / t.timescale || info.duration / info.timescale || 1;
      return t.nb_samples / seconds;
    }));
    const nbSamples = Math.max(1, Math.round(rate * options.segmentSeconds));
    for (const t of tracks) {
      // rapAlignement off: cut between keyframes too, or a file with one keyframe would be one segment.
      mp4.setSegmentOptions(t.id, undefined, { nbSamples, rapAlignement: false, sizePerSegment: options.segmentBytes });
      segmentStart.set(t.id, 0);
    }
    // initializeSegmentation() zeroes the movie duration (mvhd) for the fragments; a second call, with the
    // duration restored, gives an init segment from which the recipient knows the length before the end.
    mp4.initializeSegmentation();
    mp4.moov.mvhd.duration = mp4.initial_duration;
    init = new Uint8Array(mp4.initializeSegmentation().buffer);
    mp4.start();
  };
  mp4.onSegment = (id, _user, buffer, nextSample) => {
    const trak = mp4.getTrackById(id);
    const first = trak.samples[segmentStart.get(id) ?? 0];
    out.push({ time: first ? first.dts / first.timescale : 0, bytes: new Uint8Array(buffer) });
    segmentStart.set(id, nextSample);
    mp4.releaseUsedSamples(id, nextSample);
  };

  /** File offset the track needs next, or undefined when it is done. */
  const needs = (t: Track): { offset: number; time: number } | undefined => {
    const trak = mp4.getTrackById(t.id);
    const s = trak.samples[trak.nextSample];
    if (!s) return undefined;
    return { offset: s.offset + (s.alreadyRead ?? 0), time: s.dts / s.timescale };
  };

  let pos = 0;
  let read = 0;
  let sentInit = false;
  for (;;) {
    // Stop short of a slice already held, so no byte is read twice.
    const held = mp4.stream.buffers.find((b) => b.fileStart > pos);
    const end = Math.min(file.size, pos + options.readBytes, held ? held.fileStart : Infinity);
    if (end <= pos) throw new Error('MP4 re-mux: the index points past the end of the file');
    const next = mp4.appendBuffer(await readSlice(file, pos, end));
    read += end - pos;
    failWith(errors);
    if (read > MAX_READ_FACTOR * file.size + options.readBytes) throw new Error('MP4 re-mux did not converge');

    if (init && !sentInit) {
      sentInit = true;
      yield init;
    }
    if (out.length > 0) {
      // Segments made by one read, in time order (mp4box makes them per track, round robin by sample count).
      out.sort((a, b) => a.time - b.time);
      const batch = out.splice(0).map((p) => p.bytes);
      yield* batch;
    }

    if (!init) {
      // Still looking for the index: go where mp4box asks.
      pos = typeof next === 'number' && next > pos ? next : end;
      if (pos >= file.size) throw new Error('MP4 re-mux: no index (moov) found');
      continue;
    }

    const wants = tracks.map(needs).filter((w) => w !== undefined);
    if (wants.length === 0) break;
    // Drop slices that end before the earliest byte any track still needs (mp4box's own accounting keeps
    // slices it has parsed past, which would hold the whole file by the end).
    const keepFrom = Math.min(...wants.map((w) => w.offset));
    for (const b of mp4.stream.buffers) {
      if (b.fileStart + b.byteLength <= keepFrom) b.usedBytes = b.byteLength;
    }
    mp4.stream.cleanBuffers();
    // Read for the track furthest behind in time, from the first byte it needs that we do not hold yet.
    const behind = wants.reduce((a, b) => (b.time < a.time ? b : a));
    pos = mp4.stream.getEndFilePositionAfter(behind.offset);
  }
  mp4.flush();
  failWith(errors);
  if (out.length > 0) yield* out.splice(0).map((p) => p.bytes);
}
