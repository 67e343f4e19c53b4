/**
 * The SDK's record of a room's entries passed on: each `rseq` once, an entry that comes after a higher one (an
 * owner node placing an earlier owner's late append) passed on too, and one the app did not keep let through again.
 */
import { describe, expect, it } from 'vitest';
import { Seen } from '../../client/sdk/rooms.ts';

describe('Seen (room entries passed on)', () => {
  it('passes each rseq once, in any order', () => {
    const seen = new Seen();
    expect([1, 2, 4, 5].map((r) => seen.add(r))).toEqual([true, true, true, true]);
    expect(seen.add(3)).toBe(true); // late, below the highest: still new
    expect([1, 3, 5].map((r) => seen.add(r))).toEqual([false, false, false]); // copies after a reconnect
    expect(seen.add(6)).toBe(true);
  });

  it('lets an entry the app did not keep come again', () => {
    const seen = new Seen();
    seen.add(1);
    seen.add(2);
    seen.forget(2);
    expect(seen.add(2)).toBe(true);
    expect(seen.add(2)).toBe(false);
    seen.forget(1);
    expect(seen.add(1)).toBe(true);
  });

  it('stays bounded over a long room, and still drops old copies', () => {
    const seen = new Seen();
    for (let r = 1; r <= 20_000; r++) expect(seen.add(r)).toBe(true);
    expect(seen.add(10)).toBe(false);
    expect(seen.add(19_999)).toBe(false);
    expect(seen.add(20_001)).toBe(true);
  });
});
