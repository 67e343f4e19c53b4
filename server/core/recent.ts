/**
 * A bounded "recently seen" map with O(1) operations: two generations, the older dropped whole when the newer
 * fills up. Holds between `capacity / 2` and `capacity` most recent keys.
 *
 * Why not one Map evicting its oldest key? `map.keys().next()` after many deletions walks over the holes the
 * deletions left at the front of V8's table, so at steady state each eviction costs O(size): on the message
 * hot path that was most of the server's CPU.
 */
export class RecentMap<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.young.get(key) ?? this.old.get(key);
  }

  set(key: K, value: V): void {
    this.young.set(key, value);
    if (this.young.size >= this.capacity / 2) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }
}
