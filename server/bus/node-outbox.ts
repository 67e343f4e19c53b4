/**
 * Answered envelopes from this node to other nodes (nats-router.ts): gathered per node for one event-loop turn
 * and sent as one request whose answer lists every status in order, over the peer's direct link when this node
 * can use it (node-link.ts), else over the bus. A request per envelope would cap node-to-node text at what one
 * round trip per message allows; the transport coalesces a turn's socket writes the same way.
 *
 * Order: requests to one node arrive in the order they were made. Each path keeps its own order; across the two,
 * a batch for the link waits (`parked`) while any request to that node is unanswered on the bus (a link is
 * learnt from such an answer), and a batch whose link never opened goes to the bus (the dial marked the peer's
 * link unreachable, so everything after it does too).
 */
import { RequestError, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { pack, unpack } from 'msgpackr';
import { Limits, Op } from '../../shared/protocol.ts';
import { RouterError, type AddressedEnvelope, type DeliveryStatus, type NodeId, type SettledEnvelope } from '../core/router.ts';
import { LinkFailure, type LinkAddress, type NodeLinks } from './node-link.ts';

/**
 * What a node sends to another node: an envelope for one of its names (`ep`: the epoch the sender addressed;
 * absent: whatever is current), or one for the node itself.
 */
export type NodeMessage = { e: AddressedEnvelope; ep?: number } | { s: SettledEnvelope };
/** A bus request's answer: the statuses in order, and the answering node's link (learnt before any stream's chunk). */
export interface Answer { st: DeliveryStatus[]; l?: LinkAddress }

/** Envelopes for one node gathered during one event-loop turn, and who waits for each one's status. */
interface Batch {
  msgs: NodeMessage[];
  waiters: Array<{ resolve: (s: DeliveryStatus) => void; reject: (e: RouterError) => void }>;
  /** A rough upper bound of the encoded size, to stay far under NATS' 1 MiB default max_payload. */
  bytes: number;
}
/** Most envelopes, and most (estimated) bytes, in one request. */
const BATCH_MAX = 256;
const BATCH_BYTES = 512 * 1024;

/** A rough upper bound of one message's encoded size (see `Batch.bytes`): texts and read receipts vary. */
function estimate(msg: NodeMessage): number {
  if (!('e' in msg)) return 256;
  if (msg.e.k === 'text') return msg.e.text.length * 3 + 256;
  if (msg.e.k === 'roomOut') return msg.e.bytes + 256;
  if (msg.e.k === 'roomIn' && msg.e.frame?.t === Op.Send) return msg.e.frame.text.length * 3 + 256;
  if (msg.e.k === 'signal' && 'ids' in msg.e.frame) return msg.e.frame.ids.length * (Limits.maxIdChars + 2) + 256;
  return 256;
}

/** What the outbox needs of its router. */
export interface OutboxHost {
  /** The bus connection; throws BUS_UNAVAILABLE (a RouterError) while it is down. */
  connection(): NatsConnection;
  /** The direct links, when configured. */
  links(): NodeLinks | undefined;
  /** `node`'s subject on the bus. */
  subject(node: NodeId): string;
  /** `node` answered: a sign of life. */
  alive(node: NodeId): void;
  /** Longest wait for a bus answer, ms. */
  timeout: number;
}

export class NodeOutbox {
  /** Batches waiting for the end of this turn, by destination node. */
  private readonly open = new Map<NodeId, Batch>();
  /** Requests sent over the bus and not yet answered, by node. */
  private readonly onBus = new Map<NodeId, number>();
  /** Batches for a node's link that wait for that node's requests on the bus to be answered, in order. */
  private readonly parked = new Map<NodeId, Batch[]>();

  constructor(private readonly host: OutboxHost) {}

  /** One answered envelope to `node`: its status, or a RouterError (BUS_UNAVAILABLE: not sent; NO_ANSWER). */
  request(node: NodeId, msg: NodeMessage): Promise<DeliveryStatus> {
    this.host.connection();
    return new Promise((resolve, reject) => {
      let batch = this.open.get(node);
      if (!batch) {
        this.open.set(node, (batch = { msgs: [], waiters: [], bytes: 0 }));
        if (this.open.size === 1) setImmediate(this.flush);
      }
      batch.msgs.push(msg);
      batch.waiters.push({ resolve, reject });
      batch.bytes += estimate(msg);
      if (batch.msgs.length >= BATCH_MAX || batch.bytes >= BATCH_BYTES) {
        this.open.delete(node);
        void this.send(node, batch);
      }
    });
  }

  private readonly flush = (): void => {
    const due = [...this.open];
    this.open.clear();
    for (const [node, batch] of due) void this.send(node, batch);
  };

  /** A batch over `node`'s link when it has a usable one (parked while bus requests to it are out), else the bus. */
  private async send(node: NodeId, batch: Batch): Promise<void> {
    try {
      this.host.connection();
      const links = this.host.links();
      if (links?.usable(node)) {
        if (this.onBus.has(node)) {
          const parked = this.parked.get(node);
          if (parked) parked.push(batch);
          else this.parked.set(node, [batch]);
          return;
        }
        try {
          const statuses = await links.request(node, batch.msgs) as DeliveryStatus[];
          this.answered(node, batch, statuses);
          return;
        } catch (err) {
          if (!(err instanceof LinkFailure)) throw err;
          // Sent, or maybe: it may have arrived, as a bus request that timed out.
          if (err.sent) throw new RouterError('NO_ANSWER', err.message, { cause: err });
          // Its connection never opened (the peer's link is now marked unreachable): the bus, in the same order.
          this.host.connection();
        }
      }
      await this.sendOnBus(node, batch);
    } catch (err) {
      const e = busError(err);
      for (const w of batch.waiters) w.reject(e);
    }
  }

  private async sendOnBus(node: NodeId, batch: Batch): Promise<void> {
    const nc = this.host.connection();
    this.onBus.set(node, (this.onBus.get(node) ?? 0) + 1);
    try {
      const answer = await nc.request(this.host.subject(node), pack(batch.msgs), { timeout: this.host.timeout });
      const { st: statuses, l } = unpack(answer.data) as Answer;
      if (l) this.host.links()?.learn(node, l);
      this.answered(node, batch, statuses);
    } catch (err) {
      if (!(err instanceof RequestError && err.isNoResponders())) throw err;
      for (const w of batch.waiters) w.resolve('gone');
    } finally {
      const n = this.onBus.get(node)! - 1;
      if (n > 0) this.onBus.set(node, n);
      else {
        this.onBus.delete(node);
        const parked = this.parked.get(node);
        this.parked.delete(node);
        // In order: each is written (or sent on the bus) before the next is looked at.
        for (const b of parked ?? []) void this.send(node, b);
      }
    }
  }

  private answered(node: NodeId, batch: Batch, statuses: DeliveryStatus[]): void {
    this.host.alive(node);
    for (const [i, w] of batch.waiters.entries()) w.resolve(statuses[i] ?? 'refused');
  }
}

/** A failure of the NATS client as the Router port codes it: NO_ANSWER for a timeout, else BUS_UNAVAILABLE. */
export function busError(err: unknown): RouterError {
  if (err instanceof RouterError) return err;
  const timedOut = err instanceof TimeoutError || /timeout/i.test((err as Error)?.message ?? '');
  return timedOut
    ? new RouterError('NO_ANSWER', 'no answer from the bus in time', { cause: err })
    : new RouterError('BUS_UNAVAILABLE', `bus unavailable: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
