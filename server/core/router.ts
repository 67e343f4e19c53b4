/**
 * The Router port: "who holds this name, and get this to them". The seam between the core and the nodes of a
 * deployment. The core asks it where a name's live session is and hands it envelopes; it never keeps a map of
 * other nodes' sockets. Adapters: `server/core/local-router.ts` (in-process, the default: one node, no bus) and
 * `server/bus/nats-router.ts` (NATS between nodes). Both pass `test/contract/router.contract.ts`.
 *
 * Types and documentation only: no I/O, no NATS import.
 *
 * Vocabulary:
 * - A **claim** says that one session (`sid`) of a name (`key`, the name key) is live on one node, at an
 *   **epoch**. Every claim of a name gets an epoch greater than every earlier claim of that name, kept where
 *   every node sees it (for NATS: a JetStream KV bucket written by compare-and-set on revision). The latest claim
 *   wins; the earlier holder is told (`RouterReceiver.lost`) and is *fenced*: `check` refuses its epoch, and
 *   envelopes addressed to its epoch are answered `stale`, so a node that missed the kick still cannot deliver or
 *   consume for the session that lost the name.
 * - A claim carries its session's **rank**: where the session stands in its name's sign-in order, the same on
 *   every node (the hub passes the store's `SessionRecord.created`; of two sessions of one rank the larger `sid`
 *   is the newer, which is the store's own order, `isNewerSession`, since a sid is the token hash's first bytes).
 *   A claim yields to a newer *session*, not to a later arrival: the fence refuses (SUPERSEDED) a claim whose
 *   session is older than that of the claim holding the name, so an older session's claim that was in flight
 *   when a newer sign-in replaced it cannot land after the newest session's claim and take the name from it. A
 *   newer session's claim, or one of the same session (a reconnect), takes over as described above.
 * - An **envelope** is what crosses between nodes: data, one discriminated union (`Envelope`), each kind with a
 *   stated delivery guarantee (see `EnvelopeKind`).
 * - The **bus** is whatever carries envelopes between nodes. The in-process adapter has none and is always up.
 */
import type {
  RoomCreateFrame, RoomInviteFrame, RoomJoinFrame, RoomLeaveFrame, RoomMembersFrame, RoomOwnerFrame, RoomRemoveFrame,
  RoomSendFrame, RoomWhoFrame, ServerFrame,
  Delivery, ReadByFrame, TypingFromFrame, StreamAbortedFrame, StreamAnsweredFrame, StreamEndedFrame, StreamGrantedFrame, StreamOfferedFrame,
  StreamResumableFrame, StreamResumedFrame,
} from '../../shared/protocol.ts';

/** A node's id: 1 to 32 of [A-Za-z0-9_-] (it appears in bus subjects and logs). `NODE_ID` in the config. */
export type NodeId = string;

/** One session's hold on a name, on one node, at one epoch. Immutable: a newer claim is a new object. */
export interface Claim {
  /** Name key (`nameKey()` from shared). */
  readonly key: string;
  /** The session's id (`Auth.sid`). */
  readonly sid: string;
  readonly node: NodeId;
  /** Fencing token: grows with every claim of `key`, never reused, never smaller, across every node. */
  readonly epoch: number;
  /** The session's rank (see the vocabulary above): its `SessionRecord.created`, ms. 0 when unknown (oldest). */
  readonly rank: number;
}

/**
 * Whether session `a` is newer than session `b` of the same name, by rank then sid: the order the fence keeps
 * (and the store's `isNewerSession`). A session is not newer than itself.
 */
export function newerSession(a: Pick<Claim, 'rank' | 'sid'>, b: Pick<Claim, 'rank' | 'sid'>): boolean {
  return a.rank > b.rank || (a.rank === b.rank && a.sid > b.sid);
}

/**
 * Envelope kinds and the guarantee each has. "Answered" kinds go through `deliver`, whose result is definite only
 * when it is `taken`; any other result, and any rejection, means the envelope may not have arrived.
 */
export const EnvelopeKind = {
  /**
   * A text message for the recipient `to`. Answered. `taken` means the holder's node handed it to the live session
   * and from then on owes the sender's node (`origin`) a `settled` envelope (`settle`): `delivered` after the
   * recipient's ack, or `queued` once it wrote the message to the recipient's queue (recipient dropped first). Anything else
   * (`nobody`, `stale`, `gone`, `refused`, or a rejected promise) and the sender's node queues it itself, so a text
   * ends delivered or queued, never lost. The sender's node keeps its copy until it is settled; when the
   * holder's node is seen gone first (`RouterReceiver.nodeGone`), or a later text to the same recipient is to be
   * queued (the queue keeps send order), it queues the copy, and the store's unique
   * (sender, id) index plus the recipient client's de-duplication keep a message that did arrive from showing twice.
   * Never a false `delivered`: only the recipient's ack makes one.
   */
  Text: 'text',
  /**
   * A delivery state to show the sender `to` of message `id`, wherever the sender is now. Answered, at most once,
   * not retried: a lost one only leaves the sender's client showing an earlier state, as a receipt for an offline
   * sender does on one node.
   */
  Receipt: 'receipt',
  /**
   * The holder's node settled a text it had `taken`: `delivered` (the recipient acked) or `queued` (it wrote it to
   * the recipient's queue). Addressed to the node that sent the text (`settle`), not to a name, because that node
   * holds the copy even if the sender has since moved; it drops the copy, then shows the sender a `receipt`.
   * Answered; if it cannot be settled (`gone`, or a rejection) the holder's node has nothing more to do: a gone
   * origin took its copy with it, and one that is merely unreachable queues its copy when it sees the bus down or
   * the holder gone, which de-duplication by (sender, id) makes harmless.
   */
  Settled: 'settled',
  /**
   * Name `key` went online or offline. Broadcast to every node (`broadcast`), unanswered, best effort: a node that
   * missed one (bus down) asks again for the names its sessions follow when the bus is back (`locate`). A move of
   * a user between nodes is a claim then a release of the older claim, so followers see no offline in between:
   * the node releasing a name that another node already claimed announces nothing.
   */
  Presence: 'presence',
  /**
   * The claim at `epoch` of `to` lost the name to `by`. Sent by `claim` itself to the earlier holder's node and
   * answered; the claim does not wait longer than the adapter's request timeout for it. If it never arrives (node
   * partitioned, paused) the fence still holds: that node's `check` fails and envelopes for its epoch are `stale`.
   */
  Takeover: 'takeover',
  /**
   * A sign-in replaced session `sid` of `to` (the store marked it replaced): its socket is told and closed with
   * TAKEOVER. Sent by the signing-in node to the claim it located (`deliver(env, claim)`), only when that claim's
   * session is one the sign-in replaced, so it never closes a newer session: a sign-in does not claim the name
   * itself, whose epoch could come after the newest session's own claim. Answered, best effort: if the holder
   * changed meanwhile it is `stale` and a newer claim has already closed the replaced socket.
   */
  Replaced: 'replaced',
  /**
   * Session `sid` of `to` was signed out, or ended by a password change or the account's deletion, on another node
   * (HTTP requests behind a balancer land on any node): its socket is closed with SESSION_ENDED and the holder's
   * node forgets it, so it cannot reconnect from that node's outage cache either. Sent by the node that ended it
   * to the claim it located, only when that claim is the ended session. Answered, best effort: the store no
   * longer has the session, so its next authentication anywhere fails.
   */
  Ended: 'ended',
  /**
   * Stream control between the sender's and the recipient's nodes (offer, answer, credit, end, cancel, abort), as
   * the server frame the other side's socket should receive. Answered; a stream whose envelope was not `taken`, or
   * whose peer's node is seen gone, is aborted on the side still present with the reason given.
   */
  Stream: 'stream',
  /**
   * A write landed in `to`'s queue from another node that had found nobody holding the name: the holder's node
   * reads the queue again (its drain may have read it empty just before the write landed). Answered, best effort:
   * a lost one leaves the message queued until the recipient's next drain.
   */
  Wake: 'wake',
  /**
   * A read receipt or typing indicator (`readBy`, `typingFrom`, already stamped by the sender's node) for the
   * holder of `to`. Answered, at most once, not retried: signals are best effort on one node too.
   */
  Signal: 'signal',
  /**
   * A media chunk: the sender's chunk frame, bytes untouched. Unanswered (`forward`), in order per stream, at most
   * once. The end-to-end credit window bounds how many bytes can be in flight; a lost chunk shows at the recipient's
   * node as a wrong offset and aborts the stream.
   */
  Chunk: 'chunk',
  /**
   * A room member's node to the room's owner node (the holder of the claim `#room:<room key>`, whose sid is the
   * owner's node id): `attach` (the member's session is live there: open its pipe of the room), `frame` (a room
   * frame of the member's, run on the owner as if its socket were there), `ack` (the member acknowledged these
   * delivery tags of the owner's proxy `proxy`), `detach` (its session closed). Answered; anything but `taken`
   * and the member's node locates the owner again (claiming the room itself when nobody holds it) and resends:
   * a resent `send` is answered by its stored seq ((room, sender, id) is unique in the log), a lost `ack` only
   * means redelivery (the cursor stays behind; clients de-duplicate by (room, rseq)), a lost `detach` is made up
   * by the owner seeing the member's node gone or its next delivery refused. `refresh` comes from a node that gave the
   * room up, once its last appends are done: the owner puts what they added in its tail (best effort).
   */
  RoomIn: 'roomIn',
  /**
   * The owner node to a member's holder: the server frames its proxy of the member's session was sent (room
   * messages, receipts with counts, presence, info, errors), in order, one envelope at a time per proxy. The
   * holder writes them to the session's socket, room messages under tags of its own that it maps back to the
   * proxy's. Answered; anything but `taken` and the owner drops the proxy (its pipes stop, its cursors stay
   * where its acks put them: what was not acknowledged comes again). `moved` names rooms this node no longer
   * owns: the holder attaches its session to their new owner. Also carries invitations to a name with no proxy.
   */
  RoomOut: 'roomOut',
} as const;
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind];

export interface TextEnvelope {
  k: typeof EnvelopeKind.Text;
  /** Recipient name key. */
  to: string;
  fromKey: string;
  /** Sender display name, as stamped by the sender's node. */
  from: string;
  id: string;
  text: string;
  /** Acceptance time, ms since the epoch: the sender's node's clock. */
  ts: number;
  /** The sender's node: where the `settled` envelope goes. */
  origin: NodeId;
}

export interface ReceiptEnvelope {
  k: typeof EnvelopeKind.Receipt;
  /** Sender name key (the receipt's recipient). */
  to: string;
  id: string;
  /** Display name of the message's recipient. */
  peer: string;
  state: Delivery;
}

export interface SettledEnvelope {
  k: typeof EnvelopeKind.Settled;
  /** The node that sent the text and keeps its copy (`TextEnvelope.origin`). */
  node: NodeId;
  /** Sender name key and message id: what the copy is known by. */
  fromKey: string;
  id: string;
  /** Display name of the message's recipient. */
  peer: string;
  state: typeof Delivery.Delivered | typeof Delivery.Queued;
}

export interface PresenceEnvelope {
  k: typeof EnvelopeKind.Presence;
  key: string;
  /** Display name. */
  name: string;
  online: boolean;
  /** The node announcing it. */
  origin: NodeId;
}

export interface ReplacedEnvelope {
  k: typeof EnvelopeKind.Replaced;
  to: string;
  /** The session the sign-in replaced. */
  sid: string;
}

export interface EndedEnvelope {
  k: typeof EnvelopeKind.Ended;
  to: string;
  /** The session that was ended. */
  sid: string;
}

export interface TakeoverEnvelope {
  k: typeof EnvelopeKind.Takeover;
  to: string;
  /** The epoch that lost. */
  epoch: number;
  by: Claim;
}

/**
 * Stream control relayed between nodes: the server frame the other party's socket should receive (for `granted`,
 * the sender's; for `answered`, the sender's; for `offered`, the recipient's, whose node fills in `to`).
 */
export type StreamOp =
  | StreamOfferedFrame | StreamAnsweredFrame | StreamGrantedFrame | StreamEndedFrame | StreamAbortedFrame
  | StreamResumedFrame | StreamResumableFrame;

/**
 * What a paused transfer is (docs/architecture.md, "Resuming a cut transfer"): carried by a cut's `streamAborted`
 * with `resumeMs` (the node of the party still there keeps it), by a resume request whose recipient's node kept it,
 * and by the sender's node's answer to a resume.
 */
export interface TransferMeta {
  tid: string;
  name: string;
  size: number;
  mime: string;
  container: string;
  senderKey: string;
  recipientKey: string;
  sender: string;
  recipient: string;
}

export interface StreamEnvelope {
  k: typeof EnvelopeKind.Stream;
  to: string;
  /** Name key of the stream's other party (the one whose node sends this). */
  fromKey: string;
  origin: NodeId;
  /**
   * The epoch of that party's claim, on an offer: the recipient's node then sends its answer and credit by
   * `forward` to that claim (the chunks' path, the direct link when there is one) rather than `deliver`.
   */
  fromEpoch?: number;
  /**
   * The transfer, on a resumable `streamAborted` (the other node keeps it paused), on a resume request
   * (`streamResumed` to the sender's holder, when the recipient's node kept it) and on the sender's node's answer.
   */
  kept?: TransferMeta & { expires?: number };
  frame: StreamOp;
}

export interface SignalEnvelope {
  k: typeof EnvelopeKind.Signal;
  to: string;
  frame: ReadByFrame | TypingFromFrame;
}

export interface WakeEnvelope {
  k: typeof EnvelopeKind.Wake;
  to: string;
}

export interface ChunkEnvelope {
  k: typeof EnvelopeKind.Chunk;
  to: string;
  /**
   * The chunk frame as the sender sent it (header and payload). Valid during the call it is handed over in only
   * (`forward`, `RouterReceiver.envelope`): it may be a transport's or a link's receive buffer.
   */
  bytes: Uint8Array;
}

/**
 * What `forward` carries: chunks, a stream's `ended` (which must not overtake its chunks), and the recipient's
 * answer and credit (latency-critical, and kept in order with each other).
 */
export type ForwardedEnvelope = ChunkEnvelope | StreamEnvelope;

/** Who a room frame is from: a session on some node (see `RoomInEnvelope`). */
export interface RoomMemberRef {
  key: string;
  name: string;
  sid: string;
  /** The node holding the member's session. */
  node: NodeId;
}

/** The room frames a member's node passes to the room's owner (`list` is answered anywhere, from the store). */
export type OwnedRoomFrame =
  | RoomSendFrame | RoomCreateFrame | RoomJoinFrame | RoomLeaveFrame | RoomInviteFrame | RoomRemoveFrame
  | RoomOwnerFrame | RoomMembersFrame | RoomWhoFrame;

export interface RoomInEnvelope {
  k: typeof EnvelopeKind.RoomIn;
  /** `#room:<room key>`: the room's owner claim. */
  to: string;
  member: RoomMemberRef;
  /** `refresh`: an earlier owner's last appends are done; the owner reads the log above its tail. */
  op: 'attach' | 'frame' | 'ack' | 'detach' | 'refresh';
  frame?: OwnedRoomFrame;
  /** For `ack`: the owner's proxy and its delivery tags. */
  proxy?: string;
  tags?: number[];
  /** The member's node (heard from). */
  origin: NodeId;
}

export interface RoomOutEnvelope {
  k: typeof EnvelopeKind.RoomOut;
  /** The member's name key. */
  to: string;
  /** The member's session: a holder with another session of the name refuses it. */
  sid?: string;
  /** The owner's proxy of the session: acknowledgements go back to it. */
  proxy?: string;
  frames: ServerFrame[];
  /** Room keys the owner no longer serves. */
  moved?: string[];
  origin: NodeId;
  /** A rough size for the bus adapter's batches (texts dominate). */
  bytes: number;
}

/** Everything addressed to the holder of one name. */
export type AddressedEnvelope = TextEnvelope | ReceiptEnvelope | TakeoverEnvelope | ReplacedEnvelope | EndedEnvelope | StreamEnvelope | ChunkEnvelope | WakeEnvelope | SignalEnvelope | RoomInEnvelope | RoomOutEnvelope;
export type Envelope = AddressedEnvelope | SettledEnvelope | PresenceEnvelope;

/**
 * A definite answer from `deliver`:
 * - `taken`: the holder's node took it (see `EnvelopeKind` for what it then owes);
 * - `nobody`: no live claim of that name anywhere (or its node is gone);
 * - `stale`: the claim it was addressed to no longer holds the name: `locate` again;
 * - `gone`: the holder's node is gone (it died or left the bus); the claim is void for delivery;
 * - `refused`: the holder's node holds the name but its session could not take it now (closing, not ready).
 */
export type DeliveryStatus = 'taken' | 'nobody' | 'stale' | 'gone' | 'refused';

/** The bus as a node sees it. The in-process adapter is always `up`. */
export type BusHealth = { up: true } | { up: false; reason: string };

/** Why a router operation rejected. Internal to the server (clients see STORE_UNAVAILABLE, a queue, or an abort). */
export const RouterErrorCode = {
  /** The bus is down (or this router is closed): nothing was sent. Retry when `health()` is up again. */
  BUS_UNAVAILABLE: 'BUS_UNAVAILABLE',
  /** Sent, but no answer within the adapter's timeout: it may or may not have arrived. */
  NO_ANSWER: 'NO_ANSWER',
  /** `check`: the claim is no longer the name's latest; the session lost the name. */
  STALE_EPOCH: 'STALE_EPOCH',
  /** `claim`: lost the compare-and-set race too many times in a row. Retryable. */
  CLAIM_CONFLICT: 'CLAIM_CONFLICT',
  /**
   * `claim`: a newer session of the name holds it (`newerSession`); nothing was written, nobody was told. Not
   * retryable: the session was replaced, and the hub closes its socket with TAKEOVER.
   */
  SUPERSEDED: 'SUPERSEDED',
} as const;
export type RouterErrorCode = (typeof RouterErrorCode)[keyof typeof RouterErrorCode];

/**
 * Runs a router operation so that a synchronous throw (an adapter refusing at once, e.g. BUS_UNAVAILABLE while the
 * bus is down) arrives as a rejection like any other: callers handle one failure path.
 */
export function viaRouter<T>(op: () => Promise<T>): Promise<T> {
  try {
    return op();
  } catch (err) {
    return Promise.reject(err);
  }
}

export class RouterError extends Error {
  constructor(readonly code: RouterErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RouterError';
  }
}

/** What a node's core implements to hear from the router. Called from the router's own turn; must not throw. */
export interface RouterReceiver {
  /**
   * An envelope for `claim`, one of this node's claims, still current here (the adapter checked the epoch).
   * Returns whether the session took it (`taken`) or not (`refused`). Decided synchronously, on arrival.
   */
  envelope(claim: Claim, env: AddressedEnvelope): boolean;
  /** A text this node sent another node was settled there (see `EnvelopeKind.Settled`). */
  settled(env: SettledEnvelope): void;
  /** A presence change announced by any node, this one included. */
  presence(env: PresenceEnvelope): void;
  /**
   * This node's `claim` lost its name: to `by` (a newer claim, on this or another node), or, with `by` null, to a
   * fence check that found it stale. The core closes the session's socket with TAKEOVER; nothing it still does
   * for that claim will pass the fence. Told once per claim, possibly before `claim` has resolved (the NATS
   * adapter's claim may still wait for the earlier holder's answer): the core keeps it until then.
   */
  lost(claim: Claim, by: Claim | null): void;
  /**
   * `node` is gone: it left, or was not heard from within the adapter's stated time. Its claims are void; the core
   * queues what it had handed to that node and not yet seen settled, and aborts streams with its users.
   */
  nodeGone(node: NodeId): void;
  /**
   * The direct link with `node` (an adapter's faster path for `forward`) failed: what was forwarded over it may be
   * lost, so the core aborts the streams with that node's users as it does when the bus goes down. Only adapters
   * with such links call it.
   */
  linkLost?(node: NodeId): void;
  /** The bus went down or came back. While down, remote operations reject with BUS_UNAVAILABLE. */
  health(health: BusHealth): void;
}

export interface Router {
  /** Adapter name for logs and health (`in-process`, `nats`). */
  readonly kind: string;
  readonly nodeId: NodeId;

  /** Connects and starts receiving. Rejects with a clear message when the bus cannot be reached at start-up. */
  start(receiver: RouterReceiver): Promise<void>;
  /** Releases this node's claims where it can, leaves the bus, stops receiving. Idempotent. */
  close(): Promise<void>;
  health(): BusHealth;

  /**
   * Makes `sid` (of rank `rank`) the holder of `key` on this node with a new, larger epoch, unless the claim holding
   * `key` now is of a newer session (`newerSession`): then it rejects with SUPERSEDED, writes nothing and tells
   * nobody. The holder compared with is whatever claim the fence has, also one whose node is gone: a newer session
   * whose node died still outranks an older one (its own reconnect, of the same rank and sid, takes over). A
   * released name has no holder, so any claim of it is made: the fence keeps no ranks of released claims, and a
   * session the store marks replaced is turned away by the hub before it claims. Whoever held it before (here or
   * on another node) is told (`lost`) before this resolves, or within the adapter's request timeout if its node
   * does not answer. Concurrent claims of one name from any nodes: the newest session's ends up the holder, and
   * of claims of one session the one with the larger epoch, once all resolved.
   */
  claim(key: string, sid: string, rank: number): Promise<Claim>;
  /**
   * Gives the name up if `claim` still holds it; returns whether it did. A claim that already lost its name
   * changes nothing (the newer holder stays).
   */
  release(claim: Claim): Promise<boolean>;
  /** The name's current claim, or null when nobody holds it or its node is gone. */
  locate(key: string): Promise<Claim | null>;
  /**
   * Resolves when `claim` is still the name's latest claim, as the shared fence sees it now; rejects with
   * STALE_EPOCH (and calls `lost` for it) otherwise. Queue reads, acks and deliveries for a session pass it first.
   */
  check(claim: Claim): Promise<void>;
  /**
   * Gets an envelope to the holder of `env.to`: to the claim `to` when given (then `stale` if it lost the name),
   * else to whichever claim is current. Resolves with a definite answer; rejects with BUS_UNAVAILABLE (not sent)
   * or NO_ANSWER (sent, unanswered).
   */
  deliver(env: AddressedEnvelope, to?: Claim): Promise<DeliveryStatus>;
  /**
   * Tells the node that sent a text (`env.node`) how it ended. `taken` once that node's receiver has it; `gone`
   * when that node is gone. Rejects with BUS_UNAVAILABLE or NO_ANSWER as `deliver` does.
   */
  settle(env: SettledEnvelope): Promise<'taken' | 'gone'>;
  /**
   * Sends a chunk or a stream envelope to a known claim: in order per destination (an `ended` after the chunks
   * forwarded before it), at most once, no answer. Throws BUS_UNAVAILABLE synchronously when the bus is down.
   */
  forward(to: Claim, env: ForwardedEnvelope): void;
  /** Tells every node, this one included (presence). Best effort; throws BUS_UNAVAILABLE when the bus is down. */
  broadcast(env: PresenceEnvelope): void;
}
