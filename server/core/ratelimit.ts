import { RecentMap } from './recent.ts';

/** Token buckets: `take()` is true while the caller is within `ratePerSec` with bursts up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly ratePerSec: number, private readonly burst: number, now = Date.now()) {
    this.tokens = burst;
    this.last = now;
  }

  take(now = Date.now(), cost = 1): boolean {
    this.refill(now);
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }

  /** True when `take()` would succeed now; consumes nothing. */
  peek(now = Date.now(), cost = 1): boolean {
    this.refill(now);
    return this.tokens >= cost;
  }

  /** Gives back what `take` took (an attempt that turned out not to count, e.g. a successful sign-in). */
  refund(cost = 1): void {
    this.tokens = Math.min(this.burst, this.tokens + cost);
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.ratePerSec) / 1000);
    this.last = now;
  }
}

/**
 * Buckets per key (name, address) with a bounded number of keys: the least recently created are forgotten
 * first, so a flood of distinct keys cannot grow memory without limit.
 */
export class KeyedLimiter {
  private readonly buckets: RecentMap<string, TokenBucket>;

  constructor(private readonly ratePerSec: number, private readonly burst: number, maxKeys = 100_000) {
    this.buckets = new RecentMap(maxKeys);
  }

  /** True when `key` has budget left; consumes nothing and creates no bucket. */
  peek(key: string, now = Date.now()): boolean {
    return this.buckets.get(key)?.peek(now) ?? true;
  }

  take(key: string, now = Date.now()): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(this.ratePerSec, this.burst, now);
      this.buckets.set(key, b);
    }
    return b.take(now);
  }

  /** Gives back one token taken from `key` (no-op when the key was forgotten meanwhile). */
  refund(key: string): void {
    this.buckets.get(key)?.refund();
  }
}
