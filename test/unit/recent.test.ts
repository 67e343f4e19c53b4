import { describe, expect, it } from 'vitest';
import { RecentMap } from '../../server/core/recent.ts';

/** The specification: the last `capacity` insertions of new keys, less the deleted ones. */
class Model {
  private records: Array<{ key: string; value: number; alive: boolean }> = [];
  constructor(private readonly capacity: number) {}
  private live(key: string) {
    return this.records.slice(-this.capacity).find((r) => r.alive && r.key === key);
  }
  get(key: string) { return this.live(key)?.value; }
  set(key: string, value: number) {
    const r = this.live(key);
    if (r) r.value = value;
    else this.records.push({ key, value, alive: true });
  }
  delete(key: string) {
    const r = this.live(key);
    if (r) r.alive = false;
  }
}

/** A small deterministic generator so a failure replays. */
function rng(seed: number) {
  return () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

describe('RecentMap', () => {
  it('holds exactly the most recent `capacity` new keys, less deletions, under random use', () => {
    for (const capacity of [1, 2, 3, 7, 16, 50]) {
      const rand = rng(capacity);
      const map = new RecentMap<string, number>(capacity);
      const model = new Model(capacity);
      const keySpace = capacity * 3;
      for (let step = 0; step < 4000; step++) {
        const key = `k${Math.floor(rand() * keySpace)}`;
        const op = rand();
        if (op < 0.5) {
          map.set(key, step);
          model.set(key, step);
        } else if (op < 0.65) {
          map.delete(key);
          model.delete(key);
        }
        expect(map.get(key), `capacity ${capacity}, step ${step}, ${key}`).toBe(model.get(key));
        if (step % 50 === 0) {
          for (let k = 0; k < keySpace; k++) expect(map.get(`k${k}`), `capacity ${capacity}, step ${step}, k${k}`).toBe(model.get(`k${k}`));
        }
      }
    }
  });

  it('keeps every one of 100,000 message-like ids and drops the oldest past capacity', () => {
    const map = new RecentMap<string, number>(100_000);
    const id = (i: number) => `bench00042_${i.toString(36).padStart(7, '0')}`;
    for (let i = 0; i < 100_000; i++) map.set(id(i), i);
    let held = 0;
    for (let i = 0; i < 100_000; i++) if (map.get(id(i)) === i) held++;
    expect(held).toBe(100_000);
    map.set(id(100_000), 100_000);
    expect(map.get(id(0))).toBeUndefined();
    expect(map.get(id(1))).toBe(1);
    expect(map.get(id(100_000))).toBe(100_000);
  });

  it('replacing a held value keeps its place in the eviction order', () => {
    const map = new RecentMap<string, string>(2);
    map.set('a-key-1', 'accepted');
    map.set('b-key-2', 'accepted');
    map.set('a-key-1', 'delivered');
    expect(map.get('a-key-1')).toBe('delivered');
    map.set('c-key-3', 'accepted');
    expect(map.get('a-key-1')).toBeUndefined();
    expect(map.get('b-key-2')).toBe('accepted');
  });

  it('refuses a nonsensical capacity', () => {
    expect(() => new RecentMap(0)).toThrow(RangeError);
    expect(() => new RecentMap(1.5)).toThrow(RangeError);
  });
});
