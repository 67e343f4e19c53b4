/**
 * Text delivery: where each message goes (straight to a live session, or the store queue), the queue drain after
 * `hello`, acks and receipts, requeue when a session leaves, and (sender, id) de-duplication.
 *
 * Rules (see docs/architecture.md, "Text delivery and the queue"):
 * - A message for a recipient whose session is `live` goes straight to it; the sender gets `accepted`, then
 *   `delivered` when the recipient acks. If the recipient drops first, the message is written to the queue
 *   and the sender gets `queued`.
 * - Otherwise (offline, or online but still draining its queue) the message is appended to the store queue
 *   under a per-recipient lock, so queue order is acceptance order; the sender gets `queued` only after the
 *   store committed it.
 * - A session drains its queue in batches after `hello`, waiting for each batch's acks before deleting it and
 *   fetching the next; it turns `live` only when a fetch comes back empty with no write pending.
 * - (sender, id) de-duplication: a bounded memory of recent live deliveries plus the store's unique index;
 *   the recipient's client de-duplicates too, which covers what neither can remember.
 */
import { nameKey, normalizeName } from '../../shared/names.ts';
import { Delivery as State, Op, type AckFrame, type SendFrame } from '../../shared/protocol.ts';
import { RemoteText } from './remote-text.ts';
import { EnvelopeKind, RouterError, viaRouter, type Router, type SettledEnvelope, type TextEnvelope } from './router.ts';
import { storeCall, type Accounts } from './accounts.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import { KeyedMutex } from './mutex.ts';
import { RecentMap } from './recent.ts';
import { Requeuer } from './requeue.ts';
import { Drain, tellError, type Inflight, type Session } from './session.ts';
import type { StoreHealth } from './store-health.ts';
import type { PendingReceipt, Store } from './store.ts';

/** A second wake for receipts kept for a sender on another node, in case the first was lost too. */
const RECEIPT_WAKE_RETRY_MS = 2_000;

export interface DeliveryOptions {
  /** Messages one recipient's queue may hold. */
  queueCap: number;
  /** Queued messages older than this are not delivered and are purged. */
  retentionMs: number;
  /** Queued messages sent per batch at sign-in. */
  drainBatch: number;
  /** (sender, id) pairs of live deliveries remembered for de-duplication. */
  dedupEntries: number;
}

export class Delivery {
  /** Recent live deliveries by message id (see `seen`), bounded by `dedupEntries`. */
  private readonly recent: RecentMap<string, { fromKey: string; state: 'accepted' | 'delivered' }>;
  /** Serialises every store write to one recipient's queue (and the drain's emptiness check). */
  readonly queueLock = new KeyedMutex();
  /** Writes what was in flight to a departed session back to its queue (and holds it during outages). */
  readonly requeuer: Requeuer<Inflight>;
  private readonly keyCache = new Map<string, string | null>();
  /** Sessions with receipts waiting for the end of this event-loop turn. */
  private readonly receiptsDue: Session[] = [];
  /** Texts for recipients held by other nodes, and the copies kept until they are settled. */
  readonly remote: RemoteText;
  /** Called when a session's queue is drained and it turns live (rooms start then: see Rooms.start). */
  onLive: ((s: Session) => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly accounts: Accounts,
    private readonly opts: DeliveryOptions,
    /** This node's live session of each name key. */
    private readonly online: ReadonlyMap<string, Session>,
    private readonly health: StoreHealth,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly router: Router,
    /**
     * Resolves while the session still holds its name (`Router.check` of its claim, once the claim resolved);
     * queue reads and acks pass it first, so a session that lost its name cannot consume its queue.
     */
    private readonly fence: (s: Session) => Promise<void>,
  ) {
    this.recent = new RecentMap(opts.dedupEntries);
    this.requeuer = new Requeuer<Inflight>(store, this.queueLock, (to, toName, messages) => {
      this.wakeDrain(to);
      for (const m of messages) {
        this.forget(m.fromKey, m.id);
        // One from another node: its node keeps a copy and shows the sender, once told.
        if (m.origin !== undefined) this.settle(m, toName, State.Queued);
        else this.receiptAnywhere(m.fromKey, m.id, toName, State.Queued);
      }
    }, (err, to, left) => {
      this.health.down();
      this.log.warn({ err, to, count: left }, 'requeue deferred: store unavailable');
    });
    this.remote = new RemoteText(router, {
      taken: (s, msg, peer) => {
        this.remember(s.key, msg.id, 'accepted');
        this.receipt(s, msg.id, peer, State.Accepted);
      },
      notTaken: (s, toKey, msg) => this.placeHere(s, toKey, msg, true),
      requeue: (toKey, peer, messages) => void this.requeuer.requeue(toKey, peer, messages),
      settledLate: (env) => this.showSettled(env),
    });
  }

  /** After `hello`: the session drains its queue, and gets the receipts kept while it was away. */
  start(s: Session): void {
    s.phase = 'draining';
    s.drain ??= new Drain(); // made earlier when texts from other nodes arrived before hello (see `fromNode`)
    void this.runDrain(s);
    void this.replayReceipts(s);
  }

  /** The store is back: resume every paused drain. */
  resumeDrains(): void {
    for (const s of this.online.values()) if (s.phase === 'draining') void this.runDrain(s);
  }

  /**
   * The bus is back: while it was down, other nodes queued what they had for this node's sessions (live ones
   * included, as for a recipient they could not reach). Every session drains its queue again, as after `hello`;
   * paused drains resume.
   */
  redrainAll(): void {
    for (const s of this.online.values()) {
      if (s.phase === 'live') {
        s.phase = 'draining';
        s.drain = new Drain();
      }
      if (s.phase === 'draining') {
        void this.runDrain(s);
        void this.replayReceipts(s); // kept by other nodes that could not reach this one meanwhile
      }
    }
  }

  send(s: Session, f: SendFrame): void {
    const toKey = this.keyOf(f.to);
    if (toKey === null) {
      s.error({ code: 'UNKNOWN_CONTACT', message: 'no account has that name', ref: f.id });
      return;
    }
    const seen = this.seen(s.key, f.id);
    if (seen) {
      this.receipt(s, f.id, f.to, seen === 'accepted' ? State.Accepted : State.Delivered);
      return;
    }
    const msg: Inflight = { fromKey: s.key, from: s.name, id: f.id, text: f.text, ts: this.clock.now() };
    // Not held here (or earlier texts to it still wait for another node's answer): ask the router.
    if (!this.online.has(toKey) || this.remote.busy(toKey)) this.remote.send(s, toKey, msg, normalizeName(f.to) ?? f.to);
    else this.placeHere(s, toKey, msg);
  }

  /**
   * A text for a recipient not held by another node: straight to its session here, held, or the queue.
   * `wake`: no node held the recipient when asked, so once queued, a holder that appeared since is told.
   */
  private placeHere(s: Session, toKey: string, msg: Inflight, wake = false): void {
    const r = this.online.get(toKey);
    const d = r?.phase === 'draining' ? r.drain : undefined;
    if (r && (r.phase === 'live' || (d && (d.settling || !this.health.up)))) {
      if (r.phase === 'live' || !this.health.up) this.deliver(r, msg);
      else (d!.held ??= []).push(msg);
      this.remember(s.key, msg.id, 'accepted');
      this.receipt(s, msg.id, r.name, State.Accepted);
      return;
    }
    void this.queueFromSender(s, toKey, msg, wake);
  }

  /**
   * A text from another node for `r`, a session of this node holding the claim it was addressed to. Taken unless
   * the session is closed: straight to it when live, else held in memory until its drain ends (a queue write by
   * the sender's node could land after this node's drain read the queue empty, and wait for the next sign-in).
   */
  fromNode(r: Session, env: TextEnvelope): boolean {
    if (r.phase === 'closed') return false;
    const msg: Inflight = { fromKey: env.fromKey, from: env.from, id: env.id, text: env.text, ts: env.ts, origin: env.origin };
    if (r.phase === 'live' || (r.phase === 'draining' && !this.health.up)) this.deliver(r, msg);
    else ((r.drain ??= new Drain()).held ??= []).push(msg);
    return true;
  }

  /**
   * This node's copy of a text another node took was settled there: the sender is shown how it ended (once the
   * text's own answer is applied, if the settle overtook it; see `RemoteText`).
   */
  settled(env: SettledEnvelope): void {
    if (this.remote.settled(env)) this.showSettled(env);
  }

  private showSettled(env: SettledEnvelope): void {
    if (env.state === State.Delivered) this.remember(env.fromKey, env.id, 'delivered');
    else this.forget(env.fromKey, env.id);
    this.receiptAnywhere(env.fromKey, env.id, env.peer, env.state);
  }

  /**
   * A delivery state for a sender wherever it is: its session here, else the node holding it; a `delivered`
   * that reaches no session is kept in the store for the sender's next `hello`.
   */
  receiptAnywhere(fromKey: string, id: string, peer: string, state: State): void {
    const here = this.online.get(fromKey);
    if (here) return this.receipt(here, id, peer, state);
    viaRouter(() => this.router.deliver({ k: EnvelopeKind.Receipt, to: fromKey, id, peer, state })).then(
      (status) => status === 'taken' ? undefined : Promise.reject(new Error(status)),
    ).catch(() => {
      if (state === State.Delivered) void this.keepReceipts(fromKey, [{ id, to: peer, at: this.clock.now() }]);
    });
  }

  /** Tells the node that sent `m` how it ended (see `EnvelopeKind.Settled`); a lost one is covered there. */
  private settle(m: Inflight, peer: string, state: typeof State.Delivered | typeof State.Queued): void {
    viaRouter(() => this.router.settle({ k: EnvelopeKind.Settled, node: m.origin!, fromKey: m.fromKey, id: m.id, peer, state })).catch((err: unknown) => {
      this.log.debug({ err, node: m.origin }, 'could not settle a text with its node');
    });
  }

  private async queueFromSender(s: Session, toKey: string, msg: Inflight, wake = false): Promise<void> {
    try {
      const { toName, result } = await this.enqueue(toKey, msg);
      if (result === 'full') throw new AppError('QUEUE_FULL', `${toName}'s queue is full; try again later`, msg.id);
      this.receipt(s, msg.id, toName, State.Queued);
      if (wake && !this.online.has(toKey)) this.wakeHolder(toKey);
    } catch (err) {
      tellError(s, err, msg.id, () => this.health.down());
    }
  }

  /**
   * Appends to the queue under the recipient's lock and wakes its drain; maps outages to AppError. The
   * recipient's name is read under the lock too: a send whose read takes longer (the first to a name not yet in
   * memory) must not let a later one of the same sender overtake it.
   */
  private async enqueue(toKey: string, msg: Inflight): Promise<{ toName: string; result: 'queued' | 'full' }> {
    const out = await this.queueLock.run(toKey, async () => {
      const toName = this.online.get(toKey)?.name ?? (await this.accounts.lookup(toKey));
      if (toName === null) throw new AppError('UNKNOWN_CONTACT', 'no account has that name', msg.id);
      if (!this.health.up) throw new AppError('STORE_UNAVAILABLE', 'the message store is unavailable; try again shortly', msg.id);
      // The cap protects an absent recipient's storage. One who is online is draining (and requeues after a
      // takeover may have filled the queue): refusing its senders would only stall a conversation in progress.
      const cap = this.online.has(toKey) ? Number.MAX_SAFE_INTEGER : this.opts.queueCap;
      const r = await storeCall(() => this.store.enqueue({
        to: toKey, from: msg.from, fromKey: msg.fromKey, id: msg.id, text: msg.text, ts: msg.ts,
      }, cap));
      return { toName, result: r.status === 'full' ? 'full' as const : 'queued' as const };
    });
    if (out.result === 'queued') this.wakeDrain(toKey);
    return out;
  }

  /**
   * The recipient signed in on another node while this one was finding out where it is: its drain there may have
   * read the queue empty before this write landed. Its node is told to read again (see `EnvelopeKind.Wake`).
   */
  private wakeHolder(toKey: string): void {
    viaRouter(() => this.router.locate(toKey)).then((claim) => {
      if (claim && claim.node !== this.router.nodeId) return this.router.deliver({ k: EnvelopeKind.Wake, to: toKey }, claim);
      return undefined;
    }).catch((err: unknown) => this.log.debug({ err, to: toKey }, 'could not wake the holder of a queue'));
  }

  /**
   * Another node wrote to `s`'s queue after finding nobody holding the name: read it again, as after `hello`
   * (a live session drains again; new texts wait behind the queue meanwhile).
   */
  woken(s: Session): void {
    if (s.phase === 'live') {
      s.phase = 'draining';
      s.drain = new Drain();
    }
    if (s.phase === 'draining') {
      this.wakeDrain(s.key);
      void this.replayReceipts(s); // another node may have kept receipts for it (see `keepReceipts`)
    }
  }

  /** A write to `key`'s queue landed: its drain, if any, reads again. */
  private wakeDrain(key: string): void {
    const r = this.online.get(key);
    if (r?.drain) {
      r.drain.dirty = true;
      if (!r.drain.running) void this.runDrain(r);
    }
  }

  ack(s: Session, f: AckFrame): void {
    const seqs: number[] = [];
    /** `delivered` receipts for senders who are not online now: kept in the store until they are back. */
    let away: Map<string, PendingReceipt[]> | undefined;
    for (const tag of f.tags) {
      const m = s.inflight.get(tag);
      if (!m) continue; // already acked, or a tag from an earlier connection: nothing to do
      s.inflight.delete(tag);
      if (m.seq !== undefined) {
        seqs.push(m.seq);
        const d = s.drain;
        if (d && --d.batchLeft === 0) d.batchDone?.();
      }
      this.remember(m.fromKey, m.id, 'delivered');
      if (m.origin !== undefined) {
        this.settle(m, s.name, State.Delivered);
        continue;
      }
      const sender = this.online.get(m.fromKey);
      if (sender) this.receipt(sender, m.id, s.name, State.Delivered);
      else (away ??= new Map()).set(m.fromKey, [...(away.get(m.fromKey) ?? []), { id: m.id, to: s.name, at: this.clock.now() }]);
    }
    for (const [fromKey, receipts] of away ?? []) void this.receiptsAway(fromKey, receipts);
    if (seqs.length > 0) {
      // If this delete is lost (or the fence refuses it) the messages come again next sign-in; the client
      // de-duplicates them.
      this.fence(s).then(() => storeCall(() => this.store.ackQueue(s.key, seqs))).catch((err: unknown) => {
        s.log.warn({ err, count: seqs.length }, 'could not delete acknowledged messages');
      });
    }
  }

  /** `delivered` receipts for a sender with no session here: to its node if another holds it, else kept. */
  private async receiptsAway(fromKey: string, receipts: PendingReceipt[]): Promise<void> {
    const missed: PendingReceipt[] = [];
    await Promise.all(receipts.map(async (r) => {
      const status = await viaRouter(() => this.router.deliver({ k: EnvelopeKind.Receipt, to: fromKey, id: r.id, peer: r.to, state: State.Delivered }))
        .catch(() => 'failed' as const);
      if (status !== 'taken') missed.push(r);
    }));
    if (missed.length > 0) await this.keepReceipts(fromKey, missed);
  }

  /** Stores receipts for a sender who is away; if it came back meanwhile, hands them over at once. */
  private async keepReceipts(fromKey: string, receipts: PendingReceipt[]): Promise<void> {
    try {
      await storeCall(() => this.store.putReceipts(fromKey, receipts));
    } catch (err) {
      this.log.warn({ err, count: receipts.length }, 'could not keep receipts for an absent sender');
      return;
    }
    const back = this.online.get(fromKey);
    if (back && (back.phase === 'draining' || back.phase === 'live')) {
      await this.replayReceipts(back);
      return;
    }
    // The sender may be live on another node whose answer was lost (the bus was coming back): wake its holder to
    // read them from the store, now and once more shortly, so a sender who stays connected still gets them.
    this.wakeHolder(fromKey);
    this.clock.setTimeout(() => this.wakeHolder(fromKey), RECEIPT_WAKE_RETRY_MS).unref?.();
  }

  /** Hands a session the `delivered` receipts that were reached while it was away (see `keepReceipts`). */
  private async replayReceipts(s: Session): Promise<void> {
    try {
      for (;;) {
        const items = await storeCall(() => this.store.takeReceipts(s.key, 1000));
        if (s.phase === 'closed') {
          // Gone while reading: keep them for its next session rather than drop them.
          if (items.length > 0) await storeCall(() => this.store.putReceipts(s.key, items));
          return;
        }
        for (const r of items) this.receipt(s, r.id, r.to, State.Delivered);
        if (items.length < 1000) return;
      }
    } catch (err) {
      s.log.warn({ err }, 'could not replay receipts kept while away');
    }
  }

  /**
   * Records a delivery state for the sender's session; all of a turn's receipts leave in one frame per session
   * (see `ReceiptFrame`). A later state of the same message replaces an earlier one not yet sent.
   */
  receipt(s: Session | undefined, id: string, to: string, state: State): void {
    if (!s || s.phase === 'closed') return;
    const a = s.activity;
    if (!a.receipts) {
      a.receipts = new Map();
      this.receiptsDue.push(s);
      if (this.receiptsDue.length === 1) setImmediate(this.flushReceipts);
    }
    const prev = a.receipts.get(id);
    if (prev) {
      prev[1] = to;
      prev[2] = state;
    } else a.receipts.set(id, [id, to, state]);
  }

  private readonly flushReceipts = (): void => {
    const due = this.receiptsDue.splice(0);
    for (const s of due) {
      const a = s.activity;
      const items = [...a.receipts!.values()];
      a.receipts = undefined;
      if (s.phase === 'closed') continue;
      for (let i = 0; i < items.length; i += 1000) s.send({ t: Op.Receipt, items: items.slice(i, i + 1000) });
    }
  };

  /** Name key for a name as typed, or null when it is not a valid name. Cached: it runs for every message. */
  private keyOf(raw: string): string | null {
    let key = this.keyCache.get(raw);
    if (key === undefined) {
      const name = normalizeName(raw);
      key = name === null ? null : nameKey(name);
      if (this.keyCache.size >= 10_000) this.keyCache.clear();
      this.keyCache.set(raw, key);
    }
    return key;
  }

  private deliver(r: Session, m: Inflight): void {
    const tag = r.activity.nextTag++;
    r.inflight.set(tag, m);
    r.send(m.seq === undefined
      ? { t: Op.Message, tag, id: m.id, from: m.from, text: m.text, ts: m.ts }
      : { t: Op.Message, tag, id: m.id, from: m.from, text: m.text, ts: m.ts, queued: true });
  }

  /** Hands the session its queue, batch by batch, then turns it live. One loop per session at a time. */
  private async runDrain(s: Session): Promise<void> {
    const d = s.drain;
    if (!d || d.running) return;
    d.running = true;
    try {
      while (s.phase === 'draining') {
        d.dirty = false;
        await this.fence(s);
        if (s.phase !== 'draining') return;
        const batch = await storeCall(() =>
          this.store.fetchQueue(s.key, d.cursor, this.opts.drainBatch, this.clock.now() - this.opts.retentionMs));
        if (s.phase !== 'draining') return;
        if (batch.length === 0) {
          if (d.dirty || this.queueLock.busy(s.key)) {
            // Writes are still landing: hold new messages in memory so they stop, then read what landed.
            d.settling = true;
            await this.queueLock.run(s.key, async () => undefined);
            continue;
          }
          s.phase = 'live';
          s.drain = undefined;
          for (const m of d.held?.splice(0) ?? []) this.deliver(s, m);
          this.onLive?.(s);
          this.log.debug({ conn: s.id, user: s.name }, 'queue drained; live');
          return;
        }
        const done = new Promise<void>((resolve) => (d.batchDone = resolve));
        d.batchLeft = batch.length;
        for (const q of batch) this.deliver(s, { fromKey: q.fromKey, from: q.from, id: q.id, text: q.text, ts: q.ts, seq: q.seq });
        d.cursor = batch[batch.length - 1]!.seq;
        await done;
      }
    } catch (err) {
      if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') {
        // The session stays `draining`; live messages reach it meanwhile (see `send`), and recovery resumes it.
        this.health.down();
        s.log.warn({}, 'queue drain paused: store unavailable');
      } else if (err instanceof RouterError && err.code === 'BUS_UNAVAILABLE') {
        // As a store outage: the drain resumes when the bus is back (see Hub's bus health).
        s.log.warn({}, 'queue drain paused: bus unavailable');
      } else if (err instanceof RouterError && err.code === 'STALE_EPOCH') {
        s.log.info({}, 'queue drain stopped: the session lost its name'); // `lost` closes it
      } else {
        s.log.error({ err }, 'queue drain failed');
      }
    } finally {
      d.running = false;
    }
  }

  /** Writes what was in flight to a departed session back to its queue, in the order it was sent. */
  requeue(s: Session): void {
    const inflight = s.act?.inflight;
    const live = [...[...(inflight?.values() ?? [])].filter((m) => m.seq === undefined), ...(s.drain?.held?.splice(0) ?? [])];
    inflight?.clear();
    // Accepted messages are never refused for the cap (their senders were told `accepted`); see Store.enqueueBatch.
    void this.requeuer.requeue(s.key, s.name, live);
  }

  /**
   * De-duplication memory, keyed by message id alone with the sender in the value: ids are 126-bit random
   * strings made by clients, and hashing the bare id is much cheaper on the hot path than hashing a fresh
   * `sender + id` string. An id another sender already used is simply not de-duplicated, never confused.
   */
  private seen(fromKey: string, id: string): 'accepted' | 'delivered' | undefined {
    const e = this.recent.get(id);
    return e !== undefined && e.fromKey === fromKey ? e.state : undefined;
  }

  private remember(fromKey: string, id: string, state: 'accepted' | 'delivered'): void {
    const e = this.recent.get(id);
    if (e !== undefined && e.fromKey === fromKey) e.state = state;
    else if (e === undefined) this.recent.set(id, { fromKey, state });
  }

  private forget(fromKey: string, id: string): void {
    if (this.recent.get(id)?.fromKey === fromKey) this.recent.delete(id);
  }
}
