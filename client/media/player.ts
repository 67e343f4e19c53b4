/**
 * The recipient's half of "watch while it arrives". Takes the stream's bytes as they come and picks one of
 * three modes from what the browser says it can do:
 *
 * - `mse`: MediaSource plays the bytes while they arrive (fragmented MP4 or WebM the browser supports);
 * - `blob`: the bytes are kept in memory (up to `memoryCapBytes`) and played as a Blob once complete;
 * - `download`: the browser cannot play the file (or it is too large to keep): it is offered for saving.
 *
 * `push()` resolves only when the player has taken the bytes (in `mse` mode: when the SourceBuffer has
 * appended them, which waits while the buffer ahead is full), so granting the sender more credit after each
 * `push()` makes flow control end to end. A failure while playing from MediaSource falls back to `blob` (or
 * `download`) with a plain-language reason; it never leaves `push()` hanging.
 *
 * The player keeps a reference to each pushed array (no copy) while it keeps bytes for saving: do not reuse
 * a pushed buffer.
 */
import { mediaErrorText, MseFailure, MseSink } from './mse.ts';

export type PlayerMode = 'mse' | 'blob' | 'download';

export interface PlayerOptions {
  /** A <video> or an <audio> element. */
  video: HTMLMediaElement;
  /**
   * False when the caller keeps the file (the recipient's file store): the player then keeps no bytes and
   * plays whole from the Blob given to `end()`. Default true (kept in memory up to `memoryCapBytes`).
   */
  keep?: boolean;
  /** MIME type with codecs, as offered by the sender. */
  mime: string;
  /** Container hint from the offer: `fmp4`, `webm`, `mp4` or `other`. */
  container: string;
  /** Declared size in bytes. */
  size: number;
  /** Most bytes the player may hold for Blob playback and for saving. */
  memoryCapBytes: number;
  /** Seconds of played media kept before it is removed from the MediaSource buffer. Default 30. */
  keepBehindSeconds?: number;
  /** Seconds buffered ahead of the play position before `push()` waits. Default 60. */
  maxAheadSeconds?: number;
  /** Start playing as soon as possible (muted if the browser refuses sound without a gesture). Default true. */
  autoplay?: boolean;
  /** Give up on MediaSource when its buffer is full and playback has not moved for this long. Default 30 s. */
  stuckTimeoutMs?: number;
}

export interface PlayerEvents {
  /** The mode picked at the start; `reason` says why when it is not `mse`. */
  mode: { mode: PlayerMode; reason?: string };
  /** Playback while arriving failed or is impossible; the file plays once complete, or is offered to save. */
  fallback: { mode: 'blob' | 'download'; reason: string };
  /** The video started (or resumed) playing. */
  playing: { currentTime: number };
  /** Appends are held: the buffer ahead is full, or the browser's buffer quota was reached. */
  waiting: { why: 'ahead' | 'quota' };
  /** Media removed from the buffer, in seconds. */
  evicted: { start: number; end: number };
  /** Autoplay was refused even muted: the page should show a play button. */
  blocked: { reason: string };
  /** Every byte has arrived. `saveable` says whether `blob()` / `save()` can give the file. */
  complete: { bytes: number; saveable: boolean; reason?: string };
  ended: Record<string, never>;
  aborted: { reason: string };
  error: { message: string };
}

export interface PlayerStats {
  received: number;
  kept: number;
  appended: number;
  evictions: number;
  quotaErrors: number;
  bufferedAhead: number;
}

export interface Player {
  readonly mode: PlayerMode;
  /** Takes the next bytes of the stream. Resolves when they are taken; never rejects. */
  push(bytes: Uint8Array): Promise<void>;
  /** Every byte has been pushed (`whole`: the file, when the caller keeps it). Resolves once finished. */
  end(whole?: Blob): Promise<void>;
  /** Playing while the file arrives cannot go on (e.g. the re-mux failed): play whole once complete. */
  giveUpStreaming(reason: string): void;
  /** The stream was cancelled or failed: stop, release resources, settle pending pushes. */
  abort(reason: string): void;
  /** The whole file, once complete, when it was kept (size within `memoryCapBytes`). */
  blob(): Blob | undefined;
  /** Offers the file to save under `fileName`; false when it was not kept. */
  save(fileName: string): boolean;
  on<K extends keyof PlayerEvents>(type: K, listener: (event: PlayerEvents[K]) => void): () => void;
  stats(): PlayerStats;
  /** Releases object URLs and listeners; the video element is left empty. */
  destroy(): void;
}

const DEFAULTS = { keepBehindSeconds: 30, maxAheadSeconds: 60, autoplay: true, stuckTimeoutMs: 30_000 } as const;
/** Largest hole in the buffered media that playback jumps over by itself. */
const MAX_GAP_SECONDS = 0.3;

function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

function baseType(mime: string): string {
  return mime.split(';')[0]!.trim() || 'application/octet-stream';
}

/** Plain-language reasons, shown to the person watching. */
const say = {
  notWhileArriving: (mime: string) =>
    `This browser can't play this kind of video (${baseType(mime)}) while it is still arriving. It will play once the whole file has arrived.`,
  cannotPlay: (mime: string) =>
    `This browser can't play this kind of file (${baseType(mime)}). You can save it once it has arrived and open it with another player.`,
  tooLarge: (size: number, cap: number) =>
    `This file (${mb(size)}) is larger than the ${mb(cap)} this page may keep in memory, so it can't be played here or kept for saving.`,
  tooLargeToSave: (size: number, cap: number) =>
    `This file (${mb(size)}) is larger than the ${mb(cap)} this page may keep in memory, so it can be watched but not saved.`,
  mseFailed: (why: string) =>
    `Playing while the file arrives stopped working (${why}). The video will play once the whole file has arrived.`,
  blobFailed: (why: string) =>
    `This browser could not play the file (${why}). You can save it and open it with another player.`,
};

/** A failure's words for a person: ours as they are, anything from the browser replaced by a sentence. */
function plain(err: unknown): string {
  if (err instanceof MseFailure) return err.message;
  console.warn('player', err);
  return 'the browser could not play it';
}

function toArrayBufferView(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  // Shared or resizable backing stores cannot go to appendBuffer() or a Blob as they are.
  return bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : new Uint8Array(bytes);
}

export function createPlayer(options: PlayerOptions): Player {
  const opts = { ...DEFAULTS, ...options };
  const { video, mime, container, size, memoryCapBytes } = opts;

  // Typed at on() and emit(); stored loosely because a mapped type of Sets does not index well.
  const listeners = new Map<keyof PlayerEvents, Set<(e: unknown) => void>>();
  const emit = <K extends keyof PlayerEvents>(type: K, event: PlayerEvents[K]) => {
    // Deferred so listeners added right after createPlayer() see the first events too.
    queueMicrotask(() => {
      for (const fn of listeners.get(type) ?? []) {
        try {
          fn(event);
        } catch (err) {
          console.error(`player: a '${type}' listener threw`, err);
        }
      }
    });
  };

  let mode: PlayerMode;
  let kept: Uint8Array<ArrayBuffer>[] = [];
  let keptBytes = 0;
  const external = opts.keep === false;
  let keeping = !external && size <= memoryCapBytes;
  let notKeptReason: string | undefined = keeping || external ? undefined : say.tooLargeToSave(size, memoryCapBytes);
  let received = 0;
  let appended = 0;
  let complete = false;
  let aborted = false;
  let fileBlob: Blob | undefined;
  let blobUrl: string | undefined;
  let mse: MseSink | undefined;
  let started = false;
  /** Serialises pushes: each waits for the one before it. */
  let tail: Promise<void> = Promise.resolve();
  const cleanups: (() => void)[] = [];

  const listen = <K extends keyof HTMLMediaElementEventMap>(type: K, fn: (e: HTMLMediaElementEventMap[K]) => void) => {
    video.addEventListener(type, fn);
    cleanups.push(() => video.removeEventListener(type, fn));
  };

  // With codecs named, only the exact string counts: `video/mp4` alone says yes to HEVC it cannot decode.
  const canPlay = /codecs=/i.test(mime) ? video.canPlayType(mime) !== '' : video.canPlayType(baseType(mime)) !== '';
  const mseCapable = (container === 'fmp4' || container === 'webm' || container === 'mpeg')
    && typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(mime);

  const play = () => {
    if (!opts.autoplay) return;
    video.play().catch((err: unknown) => {
      if (aborted || !(err instanceof DOMException) || err.name !== 'NotAllowedError') return;
      if (!video.muted) {
        // Sound needs a gesture in most browsers; a muted start is allowed and the viewer can unmute.
        video.muted = true;
        video.play().catch(() => emit('blocked', { reason: 'The browser did not allow the video to start by itself.' }));
      } else {
        emit('blocked', { reason: 'The browser did not allow the video to start by itself.' });
      }
    });
  };

  listen('playing', () => emit('playing', { currentTime: video.currentTime }));
  listen('ended', () => emit('ended', {}));

  /**
   * Steps over a small hole at the start or between ranges (audio and video often start a few tens of
   * milliseconds apart). Only small ones: a bigger hole may be data still on its way.
   */
  const skipGap = () => {
    const b = video.buffered;
    const t = video.currentTime;
    for (let i = 0; i < b.length; i++) {
      if (t >= b.start(i) && t < b.end(i)) return;
      if (b.start(i) > t && b.start(i) - t < MAX_GAP_SECONDS) {
        video.currentTime = b.start(i) + 0.001;
        return;
      }
    }
  };

  const fallBack = (reason: string) => {
    if (mode !== 'mse' || aborted) return;
    mse?.close();
    video.removeAttribute('src');
    video.load();
    if (canPlay && (keeping || external)) {
      mode = 'blob';
      emit('fallback', { mode: 'blob', reason: say.mseFailed(reason) });
    } else {
      mode = 'download';
      const why = !keeping && !external ? say.tooLarge(size, memoryCapBytes) : say.blobFailed(reason);
      emit('fallback', { mode: 'download', reason: why });
    }
    if (complete) finishWhole();
  };

  const stopKeeping = () => {
    keeping = false;
    kept = [];
    keptBytes = 0;
    const total = Math.max(size, received);
    notKeptReason = mode === 'mse' ? say.tooLargeToSave(total, memoryCapBytes) : say.tooLarge(total, memoryCapBytes);
    if (mode === 'blob') {
      mode = 'download';
      emit('fallback', { mode: 'download', reason: notKeptReason });
    }
  };

  /** Builds the file from the kept pieces, once; the Blob holds its own copy, so the pieces are let go. */
  let wholeFile: Blob | undefined;
  const buildBlob = () => {
    if (external) fileBlob ??= wholeFile;
    if (!keeping || fileBlob) return;
    fileBlob = new Blob(kept, { type: baseType(mime) });
    kept = [];
  };

  /** Completion in blob or download mode: build the Blob and, in blob mode, play it. */
  const finishWhole = () => {
    buildBlob();
    if (mode === 'blob' && fileBlob) {
      blobUrl = URL.createObjectURL(fileBlob);
      listen('error', () => {
        if (mode !== 'blob') return;
        mode = 'download';
        const err = video.error;
        emit('fallback', { mode: 'download', reason: say.blobFailed(mediaErrorText(err)) });
      });
      video.src = blobUrl;
      play();
    }
    emit('complete', { bytes: received, saveable: fileBlob !== undefined, ...(fileBlob ? {} : { reason: notKeptReason ?? '' }) });
  };

  // Pick the mode.
  if (mseCapable) {
    mode = 'mse';
    mse = new MseSink(video, mime, container,
      { keepBehindSeconds: opts.keepBehindSeconds, maxAheadSeconds: opts.maxAheadSeconds, stuckTimeoutMs: opts.stuckTimeoutMs },
      {
        evicted: (start, end) => emit('evicted', { start, end }),
        waiting: (why) => emit('waiting', { why }),
        appended: () => {
          skipGap();
          if (!started && video.buffered.length > 0) {
            started = true;
            play();
          }
        },
      });
    listen('waiting', skipGap);
    listen('error', () => {
      if (mode === 'mse') fallBack(mediaErrorText(video.error));
    });
    emit('mode', { mode });
  } else if (!canPlay) {
    mode = 'download';
    emit('mode', { mode, reason: say.cannotPlay(mime) });
  } else if (!keeping && !external) {
    mode = 'download';
    emit('mode', { mode, reason: say.tooLarge(size, memoryCapBytes) });
  } else {
    mode = 'blob';
    emit('mode', { mode, reason: say.notWhileArriving(mime) });
  }

  const take = async (raw: Uint8Array) => {
    if (aborted || raw.length === 0) return;
    const bytes = toArrayBufferView(raw);
    received += bytes.length;
    if (keeping) {
      if (keptBytes + bytes.length > memoryCapBytes) stopKeeping();
      else {
        kept.push(bytes);
        keptBytes += bytes.length;
      }
    }
    if (mode !== 'mse' || !mse) return;
    try {
      await mse.append(bytes);
      appended += bytes.length;
    } catch (err) {
      if (aborted) return;
      fallBack(plain(err));
    }
  };

  const player: Player = {
    get mode() {
      return mode;
    },
    push(bytes) {
      tail = tail.then(() => take(bytes)).catch((err: unknown) => {
        emit('error', { message: err instanceof Error ? err.message : String(err) });
      });
      return tail;
    },
    giveUpStreaming(reason) {
      fallBack(reason);
    },
    end(whole) {
      tail = tail.then(async () => {
        if (aborted || complete) return;
        complete = true;
        wholeFile = whole;
        if (mode === 'mse' && mse) {
          try {
            await mse.end();
          } catch (err) {
            fallBack(plain(err));
            return;
          }
          buildBlob();
          emit('complete', { bytes: received, saveable: fileBlob !== undefined, ...(fileBlob ? {} : { reason: notKeptReason ?? '' }) });
        } else {
          finishWhole();
        }
      }).catch((err: unknown) => {
        emit('error', { message: err instanceof Error ? err.message : String(err) });
      });
      return tail;
    },
    abort(reason) {
      if (aborted) return;
      aborted = true;
      mse?.close();
      kept = [];
      keptBytes = 0;
      emit('aborted', { reason });
    },
    blob() {
      return fileBlob;
    },
    save(fileName) {
      if (!fileBlob) return false;
      const url = URL.createObjectURL(fileBlob);
      const a = document.createElement('a');
      a.href = url;
      a.download = fileName;
      a.rel = 'noopener';
      document.body.append(a);
      a.click();
      a.remove();
      // The download has started from the URL; revoking right away can cancel it in some browsers.
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      return true;
    },
    on(type, listener) {
      let set = listeners.get(type);
      if (!set) listeners.set(type, set = new Set());
      const fn = listener as (e: unknown) => void;
      set.add(fn);
      return () => { set.delete(fn); };
    },
    stats() {
      return {
        received, kept: keptBytes, appended,
        evictions: mse?.evictions ?? 0, quotaErrors: mse?.quotaErrors ?? 0,
        bufferedAhead: mse?.bufferedAhead() ?? 0,
      };
    },
    destroy() {
      player.abort('destroyed');
      for (const fn of cleanups.splice(0)) fn();
      if (blobUrl) URL.revokeObjectURL(blobUrl);
      video.removeAttribute('src');
      video.load();
    },
  };
  return player;
}
