import { describe, expect, it } from 'vitest';
import { CREDIT_HORIZON_MS, CREDIT_MIN_BYTES, CreditWindow } from '../../client/sdk/credit-window.ts';

const MiB = 1024 * 1024;

/** Feeds `rate` bytes/ms for `ms` in 10 ms steps from `t0`; returns the clock and total at the end. */
function feed(w: CreditWindow, at: { t: number; total: number }, rate: number, ms: number): void {
  for (let i = 0; i < ms; i += 10) {
    at.t += 10;
    at.total += rate * 10;
    w.arrived(at.total, at.t);
  }
}

describe('CreditWindow', () => {
  it('on a fast link (rate limited by the window itself) grows geometrically to the configured maximum', () => {
    const w = new CreditWindow({ max: 4 * MiB });
    const at = { t: 0, total: 0 };
    w.arrived(0, 0);
    const sizes: number[] = [];
    // Round trip 2 ms: whatever the window, the rate is window / 2 ms.
    for (let s = 0; s < 5; s++) {
      feed(w, at, w.size / 2, 100);
      sizes.push(w.size);
    }
    expect(sizes[0]).toBeGreaterThan(64 * 1024);
    expect(sizes.at(-1)).toBe(4 * MiB);
  });

  it('on a 150 KB/s link settles at the horizon of the rate', () => {
    const w = new CreditWindow({ max: 4 * MiB, initial: 4 * MiB });
    const at = { t: 0, total: 0 };
    w.arrived(0, 0);
    feed(w, at, 150, 3000);
    expect(w.size).toBe(150 * CREDIT_HORIZON_MS);
  });

  it('at most halves per sample, and never goes below one small chunk nor above the maximum', () => {
    const w = new CreditWindow({ max: MiB, initial: MiB });
    const at = { t: 0, total: 0 };
    w.arrived(0, 0);
    feed(w, at, 0, 100);
    expect(w.size).toBe(MiB / 2);
    feed(w, at, 0, 3000);
    expect(w.size).toBe(CREDIT_MIN_BYTES);
    feed(w, at, 1e6, 200);
    expect(w.size).toBe(MiB);
    expect(new CreditWindow({ max: 1000 }).size).toBe(1000);
  });

  it('with a round trip longer than the horizon, holds 1.5 times the bandwidth-delay product', () => {
    const w = new CreditWindow({ max: 4 * MiB, initial: 4 * MiB });
    const at = { t: 0, total: 0 };
    w.arrived(0, 0, 400);
    for (let i = 0; i < 3000; i += 10) {
      at.t += 10;
      at.total += 1500;
      w.arrived(at.total, at.t, 400);
    }
    expect(w.size).toBe(150 * 400 * 1.5);
  });

  it('the first arrival only starts the clock', () => {
    const w = new CreditWindow({ max: MiB });
    expect(w.arrived(10 * MiB, 5000)).toBe(false);
    expect(w.size).toBe(64 * 1024);
  });
});
