/**
 * One MediaSource with one SourceBuffer, fed one append at a time, with the buffer kept within bounds:
 *
 * - appends wait while more than `maxAheadSeconds` are buffered ahead of the play position (this is the
 *   recipient's backpressure: the caller grants the sender more credit only when an append is done);
 * - media more than `keepBehindSeconds` behind the play position is removed, cut at a keyframe (see
 *   keyframes.ts for why);
 * - a QuotaExceededError from appendBuffer() is not a failure: evict what is behind, or wait for playback to
 *   free room, and retry the same bytes;
 * - a parse or decode error rejects with `MseFailure`, so the player can fall back instead of hanging.
 */
import { createKeyframeIndex, type KeyframeIndex } from './keyframes.ts';

export interface MseOptions {
  keepBehindSeconds: number;
  maxAheadSeconds: number;
  /** A quota wait with no playback progress (and the video not paused) for this long gives up. */
  stuckTimeoutMs: number;
}

export interface MseHooks {
  evicted(start: number, end: number): void;
  /** Appends are held back: the buffer is full (`ahead`) or the browser's quota was hit (`quota`). */
  waiting(why: 'ahead' | 'quota'): void;
  /** Called after each append with data: the place to start playback and to step over gaps. */
  appended(): void;
}

/** The browser could not take the bytes (parse or decode error, or the element failed). */
/**
 * A plain sentence for a media element's error. The browser's own `message` ("PIPELINE_ERROR_DECODE ...",
 * "FFmpegDemuxer: open context failed") means nothing to a person, so it goes to the console only.
 */
export function mediaErrorText(err: MediaError | null): string {
  if (err?.message) console.warn('media error', err.code, err.message);
  switch (err?.code) {
    case 1: return 'playback was stopped';
    case 2: return 'the data could not be read';
    case 3: return 'the browser could not decode the picture or the sound';
    case 4: return 'this browser does not support this kind of media';
    default: return 'the browser could not play it';
  }
}

export class MseFailure extends Error {
  override name = 'MseFailure';
}

/** Frames this close to the play position are never removed, even behind it. */
const EVICT_MARGIN_SECONDS = 0.5;
/** How often a wait re-checks the buffer when the element sends no events (paused, stalled). */
const POLL_MS = 250;

function isQuotaError(err: unknown): boolean {
  return err instanceof DOMException && (err.name === 'QuotaExceededError' || err.code === 22);
}

export class MseSink {
  readonly mediaSource = new MediaSource();
  readonly url: string;
  private sourceBuffer: SourceBuffer | undefined;
  private readonly opened: Promise<void>;
  private readonly keyframes: KeyframeIndex | undefined;
  private closed = false;
  /** Rejects waits and appends when the sink is closed. */
  private closeSignal = new AbortController();
  quotaErrors = 0;
  evictions = 0;

  constructor(
    private readonly video: HTMLMediaElement,
    private readonly mime: string,
    container: string,
    private readonly options: MseOptions,
    private readonly hooks: MseHooks,
  ) {
    this.keyframes = createKeyframeIndex(container);
    this.url = URL.createObjectURL(this.mediaSource);
    this.opened = new Promise<void>((resolve, reject) => {
      const onOpen = () => {
        try {
          this.sourceBuffer = this.mediaSource.addSourceBuffer(mime);
          resolve();
        } catch (err) {
          console.warn('MediaSource refused', mime, err);
          reject(new MseFailure('the browser refused this kind of media'));
        }
      };
      this.mediaSource.addEventListener('sourceopen', onOpen, { once: true });
      this.closeSignal.signal.addEventListener('abort', () => reject(new MseFailure('closed')), { once: true });
    });
    // Avoid an unhandled rejection when the sink is closed before anyone appended.
    this.opened.catch(() => undefined);
    video.src = this.url;
  }

  /** Seconds buffered at or after the play position. */
  bufferedAhead(): number {
    const sb = this.sourceBuffer;
    // A SourceBuffer removed from its MediaSource (closed, or failed) throws on `buffered`.
    if (!sb || this.closed || this.mediaSource.readyState === 'closed') return 0;
    const t = this.video.currentTime;
    const b = sb.buffered;
    let ahead = 0;
    for (let i = 0; i < b.length; i++) ahead += Math.max(0, b.end(i) - Math.max(b.start(i), t));
    return ahead;
  }

  /** Appends `bytes`, applying the buffer policy above. Resolves once the SourceBuffer has taken them. */
  async append(bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    await this.opened;
    const sb = this.sourceBuffer!;
    await this.waitForRoom();
    await this.evictBehind(this.options.keepBehindSeconds);
    for (let lastProgress = Date.now(), lastTime = this.video.currentTime; ;) {
      this.checkOpen();
      try {
        await this.run(sb, () => sb.appendBuffer(bytes));
        break;
      } catch (err) {
        if (!isQuotaError(err)) throw err instanceof MseFailure ? err : new MseFailure(String(err));
        this.quotaErrors++;
        this.hooks.waiting('quota');
        // Room can come from removing what is behind (down to the keyframe before the play position) or,
        // failing that, from playback moving on so the browser can collect what it has played.
        if (await this.evictBehind(0)) continue;
        if (this.video.currentTime !== lastTime || this.video.paused) {
          lastTime = this.video.currentTime;
          lastProgress = Date.now();
        } else if (Date.now() - lastProgress > this.options.stuckTimeoutMs) {
          throw new MseFailure('the browser\'s media buffer is full and playback is not moving');
        }
        await this.nextTick();
      }
    }
    this.keyframes?.push(bytes);
    this.hooks.appended();
  }

  /** Marks the end of the stream once every append is done; playback then runs to the end. */
  async end(): Promise<void> {
    await this.opened;
    if (this.mediaSource.readyState !== 'open') return;
    const sb = this.sourceBuffer!;
    if (sb.updating) await this.once(sb, 'updateend');
    this.mediaSource.endOfStream();
  }

  /** Detaches from the element and releases the MediaSource. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeSignal.abort();
    try {
      if (this.sourceBuffer?.updating) this.sourceBuffer.abort();
    } catch {
      // Already detached or errored: nothing left to abort.
    }
    URL.revokeObjectURL(this.url);
  }

  private checkOpen(): void {
    if (this.closed) throw new MseFailure('closed');
    if (this.video.error) throw new MseFailure(mediaErrorText(this.video.error));
  }

  /** Holds appends while the buffer ahead of the play position is full. */
  private async waitForRoom(): Promise<void> {
    let told = false;
    while (this.bufferedAhead() > this.options.maxAheadSeconds) {
      this.checkOpen();
      if (!told) {
        told = true;
        this.hooks.waiting('ahead');
      }
      await this.nextTick();
    }
  }

  /**
   * Removes media from the start up to a keyframe at least `behind` seconds before the play position.
   * Returns whether anything was removed.
   */
  private async evictBehind(behind: number): Promise<boolean> {
    const sb = this.sourceBuffer!;
    if (!this.keyframes || sb.buffered.length === 0) return false;
    const start = sb.buffered.start(0);
    const limit = this.video.currentTime - Math.max(behind, EVICT_MARGIN_SECONDS);
    const keyframe = this.keyframes.keyframeAtOrBefore(limit);
    if (keyframe === undefined) return false;
    // Cut a little before the keyframe: our times ignore the edit list, so they can run slightly late.
    const end = keyframe - EVICT_MARGIN_SECONDS;
    if (end - start < Math.min(1, Math.max(behind, EVICT_MARGIN_SECONDS))) return false;
    this.checkOpen();
    await this.run(sb, () => sb.remove(0, end));
    this.keyframes.forgetBefore(end);
    this.evictions++;
    this.hooks.evicted(start, end);
    return true;
  }

  /** Starts a SourceBuffer operation and waits for it to finish; rejects on its `error` or `abort`. */
  private run(sb: SourceBuffer, start: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        sb.removeEventListener('updateend', onEnd);
        sb.removeEventListener('error', onError);
        sb.removeEventListener('abort', onAbort);
        this.closeSignal.signal.removeEventListener('abort', onAbort);
      };
      const onEnd = () => { cleanup(); resolve(); };
      const onError = () => { cleanup(); reject(new MseFailure('the browser could not parse or decode the data')); };
      const onAbort = () => { cleanup(); reject(new MseFailure('closed')); };
      sb.addEventListener('updateend', onEnd);
      sb.addEventListener('error', onError);
      sb.addEventListener('abort', onAbort);
      this.closeSignal.signal.addEventListener('abort', onAbort);
      try {
        start();
      } catch (err) {
        cleanup();
        reject(err);
      }
    });
  }

  /** Waits for playback to move (timeupdate), or a short poll when the element is quiet. */
  private nextTick(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.video.removeEventListener('timeupdate', done);
        this.closeSignal.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, POLL_MS);
      this.video.addEventListener('timeupdate', done);
      this.closeSignal.signal.addEventListener('abort', done);
    });
  }

  private once(target: EventTarget, type: string): Promise<void> {
    return new Promise<void>((resolve) => target.addEventListener(type, () => resolve(), { once: true }));
  }
}
