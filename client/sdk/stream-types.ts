/** The shapes shared by both ends of a file stream (client/sdk/streams.ts): what is sent, why it stopped, events. */
import type { AbortReasonName, ErrorCodeName } from '../../shared/codes.ts';

export interface FileMeta {
  /** File name shown to the recipient. */
  name: string;
  /** Exact number of bytes that will be sent. */
  size: number;
  /** MIME type with codecs, e.g. `video/webm; codecs="vp9,opus"`. */
  mime: string;
  /** `fmp4`, `mp4`, `webm` or `other`. */
  container: string;
}

/**
 * A file sent as byte ranges of the original, in the order given (e.g. an MP4's index first, then the rest).
 * The ranges must not overlap and must cover the file; `read` gives the bytes of [start, end).
 */
export interface RangedSource {
  ranges: ReadonlyArray<readonly [number, number]>;
  read(start: number, end: number): Promise<Uint8Array>;
}

export type FileSource = Blob | AsyncIterable<Uint8Array> | RangedSource;

/** Bytes of a stream and where they sit in the file. */
export interface Piece { offset: number; bytes: Uint8Array }

/**
 * Why a stream did not complete: the server's abort reason, a refusal code, or a local cause (`DISCONNECTED`:
 * this side's connection; `UNREADABLE`: this sender could not read its file, and cancelled the stream).
 */
export type StreamEndReason = AbortReasonName | ErrorCodeName | 'DISCONNECTED' | 'UNREADABLE';

export class StreamError extends Error {
  constructor(readonly reason: StreamEndReason, message: string) {
    super(message);
    this.name = 'StreamError';
  }
}

export interface Progress { bytes: number; size: number }

export interface AcceptOptions {
  /**
   * Size the window to what actually arrives (about 0.2 s of it, or 1.5 times the bandwidth-delay product when the round trip is longer, between one small chunk and `windowBytes`), so
   * a cancel or an abort waits behind that little in flight. Default true; false grants the fixed window.
   */
  adaptive?: boolean;
}

/** A cut transfer, waiting: why it was cut, and until when (ms since the epoch) it can go on. */
export interface Pause { why: StreamError; until: number }

export interface StreamEvents extends Record<string, unknown> {
  progress: Progress;
  accepted: { sid: number };
  done: { bytes: number };
  aborted: StreamError;
  /** Cut by a disconnect or a takeover: the transfer waits to go on (see the header). */
  paused: Pause;
  /** Going on as stream `sid`; `held` bytes were already at the recipient's. */
  resumed: { sid: number; held: number };
}

/** How long a transfer cut on this side stays paused when the server has not said (STREAM_RESUME_SEC's default). */
export const DEFAULT_RESUME_MS = 600_000;

/** A timer that does not keep Node alive (a no-op in browsers). */
export function unref(t: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  (t as unknown as { unref?: () => void }).unref?.();
  return t;
}
