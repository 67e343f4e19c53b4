/**
 * The recipient's adaptive credit window: how many bytes it lets the sender have in flight, sized to a fraction
 * of a second of what it actually receives.
 *
 * Why: every byte in flight (the sender's socket buffer, kernel buffers, the relay) sits ahead of a cancel or an
 * abort on the same path. A fixed 4 MiB window is 27 s of bytes at 150 KB/s; a window of `horizonMs` of the
 * measured rate keeps a cancel's wait near `horizonMs` on any link. On a fast link the window is what limits the
 * rate (rate = window / round trip), so each sample measures more than the window already allows and the window
 * grows geometrically (by horizon / round trip) to `max` within a few samples.
 *
 * On a link whose round trip is longer than the horizon the window is 1.5 times the bandwidth-delay product instead.
 *
 * Bounds: never above `max` (the configured window), never below `min` (one small chunk), and it at most halves
 * per sample so that one idle moment of the sender (reading its disk) does not collapse it.
 */
export interface CreditWindowOptions {
  /** The configured window: the most this ever grants ahead (bytes). */
  max: number;
  /** The least: one small chunk (bytes). */
  min?: number;
  /** The window is this much time at the measured rate (ms). */
  horizonMs?: number;
  /** Rate samples span at least this long (ms). */
  sampleMs?: number;
  /** The window before the first sample (bytes). */
  initial?: number;
}

export const CREDIT_MIN_BYTES = 16 * 1024;
export const CREDIT_HORIZON_MS = 200;
const SAMPLE_MS = 100;
const INITIAL_BYTES = 64 * 1024;

export class CreditWindow {
  /** The current window in bytes. */
  size: number;
  readonly max: number;
  readonly min: number;
  private readonly horizonMs: number;
  private readonly sampleMs: number;
  private markAt: number | undefined;
  private markBytes = 0;

  constructor(opts: CreditWindowOptions) {
    this.max = Math.max(1, opts.max);
    this.min = Math.min(this.max, opts.min ?? CREDIT_MIN_BYTES);
    this.horizonMs = opts.horizonMs ?? CREDIT_HORIZON_MS;
    this.sampleMs = opts.sampleMs ?? SAMPLE_MS;
    this.size = clamp(opts.initial ?? INITIAL_BYTES, this.min, this.max);
  }

  /**
   * Records that `total` bytes have arrived so far, at time `now` (ms), `minRttMs` being the least time seen
   * from a grant to the first byte it paid for. Returns true when the window changed.
   * The first call only starts the clock: the time before the first byte is the offer's round trip, not a rate.
   */
  arrived(total: number, now: number, minRttMs = 0): boolean {
    if (this.markAt === undefined) {
      this.markAt = now;
      this.markBytes = total;
      return false;
    }
    const dt = now - this.markAt;
    if (dt < this.sampleMs) return false;
    const rate = (total - this.markBytes) / dt; // bytes per ms
    this.markAt = now;
    this.markBytes = total;
    // 1.5 times the bandwidth-delay product keeps the pipe full when the round trip exceeds the horizon (two slow
    // hops, store-and-forward of each chunk): a window below it would cut the rate, the next sample would see
    // the lower rate, and the window would spiral down to `min`. With a queue building, the measured rate times
    // the least round trip stops growing once the queue holds one round trip, so this does not inflate itself.
    const next = clamp(Math.max(rate * this.horizonMs, 1.5 * rate * minRttMs, this.size / 2), this.min, this.max);
    if (next === this.size) return false;
    this.size = Math.round(next);
    return true;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
