/**
 * Handing out queue seqs for the MongoDB adapter. A seq is taken by inserting `{ to, seq }` into `queue_seqs`
 * under its unique (to, seq) index, the one arbiter every wire-compatible server gets right; why the layout is
 * this shape is explained in mongo.ts's header.
 *
 * A block of seqs (for a batch) is claimed the same way, one document per seq, in one ordered insert: claiming
 * only the block's top would let a process that read the highest claim before the block was written take a
 * seq inside it. What a block insert that collided did claim is found out by reading back the documents it
 * tagged with its own random token, never from the error.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from 'mongodb';
import { isDuplicateKey, isUnavailable } from './mongo-errors.ts';
import { queue, seqs, type LayoutLogger } from './mongo-layout.ts';

/** Attempts before a claim gives up under contention (each attempt follows a collision someone else won). */
export const MAX_ATTEMPTS = 32;
/** Claims in `queue_seqs` below the newest are deleted once every this many seqs. */
const PRUNE_SEQS_EVERY = 64;

export class SeqClaims {
  /**
   * The last claim queued per recipient: this process has one claim in flight per recipient, since racing
   * claims cost a round for all but one winner and, unserialised, grow quadratic. Across processes the unique
   * index decides.
   */
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(private readonly log: LayoutLogger) {}

  /** The next seq of `to`: one higher than any handed out. */
  next(db: Db, to: string): Promise<number> {
    return this.serialised(to, () => this.claimOne(db, to));
  }

  /**
   * Up to `count` (at least one) new seqs of `to`, ascending, each above `floor` and above every seq handed out
   * before the call. Fewer than `count` when another process took part of the block: the caller claims again
   * for the rest, and those come out higher still.
   */
  block(db: Db, to: string, count: number, floor: number): Promise<number[]> {
    return this.serialised(to, () => this.claimBlock(db, to, count, floor));
  }

  /** The claims are behind the stored messages (older database, dropped collection): moves them past. */
  async pastQueue(db: Db, to: string): Promise<void> {
    const last = await queue(db).find({ to }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(1).next();
    if (last === null) return;
    try {
      await seqs(db).insertOne({ to, seq: last.seq });
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    this.log.warn({ recipient: to, seq: last.seq }, 'queue seqs were behind the stored messages; advanced');
  }

  private serialised<T>(to: string, claim: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(to);
    // Behind a claim that found the server unreachable, fail at once rather than each wait out the timeout.
    const next =
      previous === undefined
        ? claim()
        : previous.then(claim, (error: unknown) => {
            if (isUnavailable(error)) throw error;
            return claim();
          });
    this.tails.set(to, next);
    const forget = (): void => {
      if (this.tails.get(to) === next) this.tails.delete(to);
    };
    next.then(forget, forget);
    return next;
  }

  private async highest(db: Db, to: string): Promise<number> {
    const last = await seqs(db).find({ to }, { projection: { _id: 0, seq: 1 } }).sort({ seq: -1 }).limit(1).next();
    return last?.seq ?? 0;
  }

  private async claimOne(db: Db, to: string): Promise<number> {
    let seq = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // Read the highest claim first and every few collisions; in between try the next number straight away,
      // which is still above everything claimed before this enqueue began (acceptance order holds).
      if (attempt % 4 === 0) seq = Math.max(seq, await this.highest(db, to));
      seq += 1;
      try {
        await seqs(db).insertOne({ to, seq });
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        continue; // another process took it
      }
      await this.prune(db, to, seq - 1, seq, seq);
      return seq;
    }
    throw new Error(`queue seq for ${to}: gave up after ${MAX_ATTEMPTS} contended attempts`);
  }

  private async claimBlock(db: Db, to: string, count: number, floor: number): Promise<number[]> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const base = Math.max(floor, await this.highest(db, to));
      const by = randomUUID();
      const docs = Array.from({ length: count }, (_, i) => ({ to, seq: base + 1 + i, by }));
      let claimed: number[];
      try {
        await seqs(db).insertMany(docs, { ordered: true });
        claimed = docs.map((d) => d.seq);
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        // A prune by another process may already have removed some of ours: those seqs are simply not used
        // (gaps are allowed). What is read here is certainly ours.
        const mine = await seqs(db).find({ to, by }, { projection: { _id: 0, seq: 1 } }).toArray();
        claimed = mine.map((d) => d.seq).sort((a, b) => a - b);
        if (claimed.length === 0) continue;
      }
      await this.prune(db, to, base, claimed[0]!, claimed[claimed.length - 1]!);
      return claimed;
    }
    throw new Error(`queue seqs for ${to}: gave up after ${MAX_ATTEMPTS} contended attempts`);
  }

  /**
   * Every claim below the newest is redundant (only the highest is ever read): when the seqs just claimed
   * (`lowest` to `top`, above `base`) crossed a multiple of PRUNE_SEQS_EVERY, the claims below them go. A
   * block's own claims stay until a later prune, so a process that read an old highest claim still collides
   * with them instead of taking a seq inside the block.
   */
  private async prune(db: Db, to: string, base: number, lowest: number, top: number): Promise<void> {
    if (Math.floor(top / PRUNE_SEQS_EVERY) === Math.floor(base / PRUNE_SEQS_EVERY)) return;
    await seqs(db).deleteMany({ to, seq: { $lt: lowest } });
  }
}
