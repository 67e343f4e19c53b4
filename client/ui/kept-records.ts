/**
 * A list of records per account in localStorage, each good until its `until`: what the sender's page
 * (kept-sends.ts) and the recipient's page (kept-transfers.ts) remember of transfers that can resume. Written
 * synchronously, so a record is there even when the page goes away the next moment.
 */
export interface Expiring {
  /** Until when (ms since the epoch) the record counts. */
  until: number;
}

export class KeptRecords<T extends Expiring> {
  /** `failure`: what the warning says when a list cannot be written (storage full or refused). */
  constructor(private readonly prefix: string, private readonly failure: string) {}

  load(meKey: string): T[] {
    try {
      const list = JSON.parse(localStorage.getItem(this.prefix + meKey) ?? '[]') as unknown;
      return Array.isArray(list) ? (list as T[]) : [];
    } catch {
      return []; // unreadable: nothing to resume
    }
  }

  save(meKey: string, list: T[]): void {
    try {
      if (list.length === 0) localStorage.removeItem(this.prefix + meKey);
      else localStorage.setItem(this.prefix + meKey, JSON.stringify(list));
    } catch (err) {
      console.warn(this.failure, err);
    }
  }

  /** The records of `meKey` still good; expired ones are forgotten and returned apart. */
  live(meKey: string): { live: T[]; expired: T[] } {
    const now = Date.now();
    const list = this.load(meKey);
    const live = list.filter((r) => r.until > now);
    const expired = live.length === list.length ? [] : list.filter((r) => r.until <= now);
    if (expired.length > 0) this.save(meKey, live);
    return { live, expired };
  }

  /** Keeps `r` in place of the records `same` picks. */
  put(meKey: string, r: T, same: (x: T) => boolean): void {
    this.save(meKey, [...this.load(meKey).filter((x) => !same(x)), r]);
  }

  /** Forgets the records `same` picks; whether there was one. */
  remove(meKey: string, same: (x: T) => boolean): boolean {
    const list = this.load(meKey);
    const rest = list.filter((x) => !same(x));
    if (rest.length === list.length) return false;
    this.save(meKey, rest);
    return true;
  }

  /** Every account's records still good in this browser. */
  allLive(): T[] {
    const now = Date.now();
    const out: T[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (!k?.startsWith(this.prefix)) continue;
      for (const r of this.load(k.slice(this.prefix.length))) if (r.until > now) out.push(r);
    }
    return out;
  }
}
