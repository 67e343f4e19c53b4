/**
 * A bounded "recently seen" map: it holds the `capacity` most recently inserted keys (less those deleted), and
 * a lookup costs the same at any capacity: one hash of the key and, almost always, one cache line of a flat
 * table.
 *
 * Layout: the entries live in a ring of `capacity` records (key, value, hash) in insertion order; the ring's
 * oldest record is dropped when a new key needs its place. An open-addressed table (linear probing, at most
 * half full) maps a key's 32-bit hash to its ring record, hash and record index side by side in one Int32Array,
 * so a probe compares integers and reads a key only when the whole hash matches. Deletion shifts the entries
 * behind it back (no tombstones), so probes stay short however long the map runs.
 *
 * Why not V8 Maps? A miss (the common case: a new message id) walks a bucket chain whose every entry points at
 * a key string elsewhere in the heap; at 100,000 keys that was about a microsecond per lookup against 0.4 at
 * 1,000 (issue 15). And one Map evicting its oldest key walks the holes deletions leave at the front of V8's
 * table, O(size) per eviction at steady state.
 *
 * Keys are strings or numbers, compared with `===` (so a NaN key is never found).
 */
export class RecentMap<K extends string | number, V> {
  private readonly mask: number;
  /** Two Int32 per slot: the key's hash, and 1 + the index of its ring record (0: the slot is empty). */
  private readonly table: Int32Array;
  /** The ring: grows up to `capacity` records, then each new key takes the oldest record's place. */
  private readonly keys: Array<K | undefined> = [];
  private readonly values: Array<V | undefined> = [];
  private readonly hashes: Int32Array;
  /** Ring index the next new key goes to; once the ring is full, the oldest record. */
  private next = 0;

  constructor(private readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 2 ** 28) {
      throw new RangeError(`RecentMap capacity must be an integer 1..2^28, got ${capacity}`);
    }
    let slots = 4;
    while (slots < capacity * 2) slots *= 2;
    this.mask = slots - 1;
    this.table = new Int32Array(slots * 2);
    this.hashes = new Int32Array(capacity);
  }

  get(key: K): V | undefined {
    const i = this.find(key, hash(key));
    return i < 0 ? undefined : this.values[this.table[2 * i + 1]! - 1];
  }

  /** Inserts a new key as the most recent one (dropping the oldest when full), or replaces a held key's value. */
  set(key: K, value: V): void {
    const h = hash(key);
    const i = this.find(key, h);
    if (i >= 0) {
      this.values[this.table[2 * i + 1]! - 1] = value;
      return;
    }
    const r = this.next;
    this.next = r + 1 === this.capacity ? 0 : r + 1;
    if (r === this.keys.length) {
      this.keys.push(key);
      this.values.push(value);
    } else {
      if (this.keys[r] !== undefined) this.removeSlot(this.slotOf(r));
      this.keys[r] = key;
      this.values[r] = value;
    }
    this.hashes[r] = h;
    const { table, mask } = this;
    let j = h & mask;
    while (table[2 * j + 1] !== 0) j = (j + 1) & mask;
    table[2 * j] = h;
    table[2 * j + 1] = r + 1;
  }

  delete(key: K): void {
    const i = this.find(key, hash(key));
    if (i < 0) return;
    const r = this.table[2 * i + 1]! - 1;
    this.keys[r] = undefined;
    this.values[r] = undefined;
    this.removeSlot(i);
  }

  /** The table slot holding `key`, or -1. */
  private find(key: K, h: number): number {
    const { table, mask } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const r = table[2 * i + 1]!;
      if (r === 0) return -1;
      if (table[2 * i] === h && this.keys[r - 1] === key) return i;
    }
  }

  /** The table slot pointing at ring record `r` (which is live). */
  private slotOf(r: number): number {
    const { table, mask } = this;
    let i = this.hashes[r]! & mask;
    while (table[2 * i + 1] !== r + 1) i = (i + 1) & mask;
    return i;
  }

  /** Empties slot `i`, moving back each later entry of the probe run that may fill the hole. */
  private removeSlot(i: number): void {
    const { table, mask } = this;
    let hole = i;
    for (let j = (i + 1) & mask; table[2 * j + 1] !== 0; j = (j + 1) & mask) {
      const home = table[2 * j]! & mask;
      // The entry at j may move to the hole when the hole lies on its probe path: from home up to j.
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        table[2 * hole] = table[2 * j]!;
        table[2 * hole + 1] = table[2 * j + 1]!;
        hole = j;
      }
    }
    table[2 * hole] = 0;
    table[2 * hole + 1] = 0;
  }
}

/**
 * Strings: FNV-1a over UTF-16 units; numbers: their low and high 32 bits. Then a final mix so that similar keys
 * (a shared prefix, a counter) spread over the table.
 */
function hash(key: string | number): number {
  let h: number;
  if (typeof key === 'number') h = (key | 0) ^ Math.imul((key / 0x100000000) | 0, 0x9e3779b1);
  else {
    h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return h ^ (h >>> 13);
}
