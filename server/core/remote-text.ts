/**
 * Text to a recipient held by another node (docs/architecture.md, "What the hub wiring must do", step 2).
 *
 * The sender's node asks the router where the recipient is (`locate`, remembered per name until an answer says
 * otherwise) and hands it the text (`deliver` to that claim). `taken` means the holder's node owns it now and
 * owes this node a `settled`; until then this node keeps a **copy**, by (sender, id), with the holder's node, and
 * queues it itself if that node is seen gone or the bus goes down. Any other answer, or a rejection, and the text
 * takes the path of a recipient who is not online here: the queue.
 *
 * Sends to one recipient are answered concurrently but applied in the order they were sent (one FIFO per
 * recipient while answers are outstanding), so a later message that gets its `nobody` sooner cannot be queued
 * before an earlier one. They also leave in that order: sends that find no hint share one `locate` of the
 * recipient, so a later send that finds the hint set by an earlier answer cannot overtake one still locating.
 * And a text that is queued here first queues the copies still kept for its recipient (the holder took them and
 * has not settled them, e.g. its node died and is not yet seen gone): the queue keeps acceptance order.
 *
 * A `settled` can arrive before this node applied the `taken` it answers: the holder's node hands the text to the
 * session as the request arrives, and the recipient's ack and the holder's `settle` can overtake the reply (one
 * socket read holds both, the reply is still being resolved, or the text waits in its FIFO behind an earlier
 * one). Such a settle is kept with the text's pending entry and applied right after `taken` (its receipt then
 * replaces `accepted`), and no copy is kept for it.
 */
import type { Inflight, Session } from './session.ts';
import {
  EnvelopeKind, viaRouter, type Claim, type DeliveryStatus, type NodeId, type Router, type SettledEnvelope, type TextEnvelope,
} from './router.ts';

interface Pending {
  s: Session;
  msg: Inflight;
  /** Display name of the recipient for the sender's receipts. */
  peer: string;
  /** The holder's node when it took the text; 'queue' when it did not (any reason). */
  result?: NodeId | 'queue';
  /** Its `settled`, when that arrived before the answer was applied. */
  settled?: SettledEnvelope;
}

/** A text another node took and has not yet settled. */
interface Copy {
  msg: Inflight;
  toKey: string;
  peer: string;
  node: NodeId;
}

/** What this part needs of the rest of delivery. */
export interface RemoteTextHost {
  /** The holder took it: `accepted` to the sender, and the de-duplication memory. */
  taken(s: Session, msg: Inflight, peer: string): void;
  /** It was not taken: decide as for a recipient not held elsewhere (live here now, or the queue). */
  notTaken(s: Session, toKey: string, msg: Inflight): void;
  /** Queue copies whose holder is gone (accepted messages: never refused for the cap). */
  requeue(toKey: string, peer: string, messages: Inflight[]): void;
  /** A settle that arrived before its `taken` was applied, applied now (right after `taken`). */
  settledLate(env: SettledEnvelope): void;
}

const MAX_HOLDERS = 10_000;

export class RemoteText {
  private readonly pending = new Map<string, Pending[]>();
  /** The same pending texts by `fromKey \n id`, where a settle that overtook its answer finds its text. */
  private readonly unanswered = new Map<string, Pending>();
  /** The claim last seen holding each recipient (a hint: a wrong one is answered `stale`, `gone` or `nobody`). */
  private readonly holders = new Map<string, Claim>();
  /** Copies by `fromKey \n id`, in the order they were taken. */
  private readonly copies = new Map<string, Copy>();
  /** The keys of `copies` per recipient, in the order they were taken. */
  private readonly copiesTo = new Map<string, Set<string>>();
  /** A `locate` in flight per recipient: sends that find no hint wait for the same answer, in send order. */
  private readonly locating = new Map<string, Promise<Claim | null>>();

  constructor(private readonly router: Router, private readonly host: RemoteTextHost) {}

  /** Texts to `toKey` whose answers are still outstanding: later sends to it must wait behind them. */
  busy(toKey: string): boolean {
    return this.pending.has(toKey);
  }

  /** Copies kept for other nodes now (for tests and health). */
  get copyCount(): number {
    return this.copies.size;
  }

  send(s: Session, toKey: string, msg: Inflight, peer: string): void {
    const p: Pending = { s, msg, peer };
    let list = this.pending.get(toKey);
    if (!list) this.pending.set(toKey, (list = []));
    list.push(p);
    this.unanswered.set(copyKey(msg.fromKey, msg.id), p);
    void this.attempt(toKey, msg).then((r) => {
      p.result = r;
      this.flush(toKey);
    });
  }

  private async attempt(toKey: string, msg: Inflight): Promise<NodeId | 'queue'> {
    const env: TextEnvelope = {
      k: EnvelopeKind.Text, to: toKey, fromKey: msg.fromKey, from: msg.from, id: msg.id, text: msg.text, ts: msg.ts,
      origin: this.router.nodeId,
    };
    try {
      for (let round = 0; round < 2; round++) {
        let claim = round === 0 ? this.holders.get(toKey) : undefined;
        if (!claim) {
          const found = await this.locate(toKey);
          if (!found || found.node === this.router.nodeId) {
            this.holders.delete(toKey);
            return 'queue';
          }
          claim = found;
          if (this.holders.size >= MAX_HOLDERS) this.holders.clear();
          this.holders.set(toKey, claim);
        }
        const status: DeliveryStatus = await this.router.deliver(env, claim);
        if (status === 'taken') return claim.node;
        if (status === 'refused') return 'queue';
        this.holders.delete(toKey); // stale, gone or nobody: the hint was wrong; locate once more
      }
    } catch {
      // BUS_UNAVAILABLE (not sent) or NO_ANSWER (sent, unanswered): the queue, as the router port says.
    }
    return 'queue';
  }

  /** One `locate` of `toKey` at a time; its awaiters resume in the order they asked. */
  private locate(toKey: string): Promise<Claim | null> {
    let p = this.locating.get(toKey);
    if (!p) {
      const asked = viaRouter(() => this.router.locate(toKey));
      p = asked;
      this.locating.set(toKey, asked);
      const done = (): void => {
        if (this.locating.get(toKey) === asked) this.locating.delete(toKey);
      };
      asked.then(done, done);
    }
    return p;
  }

  private flush(toKey: string): void {
    const list = this.pending.get(toKey);
    if (!list) return;
    while (list.length > 0 && list[0]!.result !== undefined) {
      const p = list.shift()!;
      const result = p.result!;
      if (list.length === 0) this.pending.delete(toKey);
      const key = copyKey(p.msg.fromKey, p.msg.id);
      if (this.unanswered.get(key) === p) this.unanswered.delete(key);
      if (p.settled) {
        // Settled already: a node took it, even if its answer here was lost (NO_ANSWER); nothing to queue or keep.
        this.host.taken(p.s, p.msg, p.peer);
        this.host.settledLate(p.settled);
      } else if (result === 'queue') {
        // Copies of earlier texts to this recipient go to its queue first (under the same queue lock, in order).
        this.requeueCopiesTo(toKey);
        this.host.notTaken(p.s, toKey, p.msg);
      } else {
        this.copies.set(key, { msg: p.msg, toKey, peer: p.peer, node: result });
        let keys = this.copiesTo.get(toKey);
        if (!keys) this.copiesTo.set(toKey, (keys = new Set()));
        keys.add(key);
        this.host.taken(p.s, p.msg, p.peer);
      }
    }
  }

  /**
   * The holder's node settled a text: the copy goes. Returns false when the text's answer is not applied yet: the
   * settle is kept and handed to the host's `settledLate` once it is; true when the host shows it now.
   */
  settled(env: SettledEnvelope): boolean {
    const key = copyKey(env.fromKey, env.id);
    const c = this.copies.get(key);
    if (c) {
      this.dropCopy(key, c);
      return true;
    }
    const p = this.unanswered.get(key);
    if (!p) return true;
    p.settled = env;
    return false;
  }

  /** `node` is gone: what it took and did not settle is queued here; hints naming it are dropped. */
  nodeGone(node: NodeId): void {
    for (const [key, c] of this.holders) if (c.node === node) this.holders.delete(key);
    this.requeueCopies((c) => c.node === node);
  }

  /** The bus is down: no settle can arrive, so every copy is queued; every hint may be stale. */
  busDown(): void {
    this.holders.clear();
    this.requeueCopies(() => true);
  }

  /** A hint for `key` is wrong (its holder announced offline, or another node announced it online). */
  forget(key: string): void {
    this.holders.delete(key);
  }

  /** The copies still kept for `toKey` go to its queue, in the order they were taken. */
  private requeueCopiesTo(toKey: string): void {
    const keys = this.copiesTo.get(toKey);
    if (keys) this.requeueCopies(() => true, [...keys].map((k) => [k, this.copies.get(k)!]));
  }

  /** Queues the copies `which` picks (of `from`: all by default), per recipient in the order they were taken. */
  private requeueCopies(which: (c: Copy) => boolean, from: Array<[string, Copy]> = [...this.copies]): void {
    const byRecipient = new Map<string, { peer: string; messages: Inflight[] }>();
    for (const [k, c] of from) {
      if (!which(c)) continue;
      this.dropCopy(k, c);
      const group = byRecipient.get(c.toKey) ?? { peer: c.peer, messages: [] };
      group.messages.push(c.msg);
      byRecipient.set(c.toKey, group);
    }
    for (const [toKey, g] of byRecipient) this.host.requeue(toKey, g.peer, g.messages);
  }

  private dropCopy(k: string, c: Copy): void {
    this.copies.delete(k);
    const keys = this.copiesTo.get(c.toKey);
    keys?.delete(k);
    if (keys?.size === 0) this.copiesTo.delete(c.toKey);
  }
}

function copyKey(fromKey: string, id: string): string {
  return `${fromKey}\n${id}`;
}
