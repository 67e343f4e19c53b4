/**
 * Sets of `[start, end)` byte ranges of one file: what a recipient holds (its file store, its stream), and
 * what a sender still has to send once a cut transfer resumes.
 */
import { MAX_STREAM_RUNS } from '../../shared/chunk.ts';

/** Sorted, merged [start, end) ranges. */
export class Ranges {
  private readonly items: [number, number][] = [];
  total = 0;

  constructor(from: ReadonlyArray<readonly [number, number]> = []) {
    for (const [a, b] of from) this.add(a, b);
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    let i = 0;
    while (i < this.items.length && this.items[i]![1] < start) i++;
    let s = start;
    let e = end;
    let removed = 0;
    while (i + removed < this.items.length && this.items[i + removed]![0] <= end) {
      const r = this.items[i + removed]!;
      s = Math.min(s, r[0]);
      e = Math.max(e, r[1]);
      this.total -= r[1] - r[0];
      removed++;
    }
    this.items.splice(i, removed, [s, e]);
    this.total += e - s;
  }

  /** End of the held range that contains `start`, or `start` when that byte is not held. */
  reach(start: number): number {
    return this.items.find((r) => r[0] <= start && r[1] > start)?.[1] ?? start;
  }

  covers(start: number, end: number): boolean {
    if (end <= start) return true;
    return this.items.some((r) => r[0] <= start && r[1] >= end);
  }

  /** A copy of the ranges, in order. */
  list(): [number, number][] {
    return this.items.map(([a, b]) => [a, b]);
  }

  /**
   * What to tell a sender when resuming: at most MAX_STREAM_RUNS ranges (the largest, back in order), since a
   * resume names no more. Bytes of the ranges left out are sent again, which is harmless.
   */
  forResume(): [number, number][] {
    const list = this.list();
    if (list.length <= MAX_STREAM_RUNS) return list;
    return list.sort((x, y) => (y[1] - y[0]) - (x[1] - x[0])).slice(0, MAX_STREAM_RUNS).sort((x, y) => x[0] - y[0]);
  }
}

/** `ranges` (in their order, e.g. an MP4's index first) without the bytes of `held`. */
export function without(ranges: ReadonlyArray<readonly [number, number]>, held: ReadonlyArray<readonly [number, number]>): [number, number][] {
  const sorted = [...held].sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [start, end] of ranges) {
    let at = start;
    for (const [a, b] of sorted) {
      if (b <= at || a >= end) continue;
      if (a > at) out.push([at, a]);
      at = Math.max(at, b);
      if (at >= end) break;
    }
    if (at < end) out.push([at, end]);
  }
  return out;
}
