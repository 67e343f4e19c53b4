/**
 * The Parley wire protocol as data: frame opcodes, frame shapes, limits.
 *
 * One WebSocket per session, binary frames only. A control frame is a msgpack map whose `t` field is an
 * opcode below. A media chunk frame is not msgpack: its first byte is CHUNK_TAG (a value no msgpack map can
 * start with), then a fixed header, then the raw bytes, so the server can forward it untouched
 * (see `shared/chunk.ts`). Shared by server and client; no Node or DOM APIs here.
 */

/** Bumped on any incompatible change; sent in `hello`, checked by the server. */
export const PROTOCOL_VERSION = 1;

/** Opcodes of control frames. Numbers keep frames small; names keep code readable. */
export const Op = {
  // client -> server
  Hello: 1,
  Send: 2,
  Ack: 3,
  Follow: 4,
  Ping: 5,
  /** The recipient has these messages on screen (read receipts; see docs/protocol.md). */
  Read: 6,
  /** The sender is typing to `to` (on) or stopped (off). Never queued. */
  Typing: 7,
  StreamOffer: 20,
  StreamAnswer: 21,
  StreamCredit: 22,
  StreamEnd: 23,
  StreamCancel: 24,
  /** The recipient asks to resume a cut transfer from the byte ranges it holds (see docs/protocol.md). */
  StreamResume: 25,
  /** Either side gives up a cut transfer for good. */
  StreamDrop: 26,
  // rooms (client -> server; see docs/protocol.md, "Rooms")
  RoomCreate: 30,
  RoomJoin: 31,
  RoomLeave: 32,
  RoomInvite: 33,
  RoomRemove: 34,
  RoomList: 35,
  /** The owner hands the room over to another member. */
  RoomOwner: 36,
  RoomMembers: 37,
  /** Which members have received one of the sender's room messages. */
  RoomWho: 38,
  // server -> client
  Welcome: 64,
  Receipt: 65,
  Message: 66,
  Presence: 67,
  Error: 68,
  Takeover: 69,
  Pong: 70,
  Shutdown: 71,
  /** `by` has read these messages of yours. */
  ReadBy: 72,
  /** `from` is typing to you (on) or stopped (off). */
  TypingFrom: 73,
  StreamOffered: 80,
  StreamAnswered: 81,
  StreamGranted: 82,
  StreamEnded: 83,
  StreamAborted: 84,
  /** Both sides: a cut transfer goes on as a new stream, sending only the bytes the recipient lacks. */
  StreamResumed: 85,
  /** To the recipient of a cut transfer: its sender is back, ask to resume now. */
  StreamResumable: 86,
  /** To the other side of a cut transfer: it was given up. */
  StreamDropped: 87,
  // rooms (server -> client)
  /** A room's owner, privacy and members with their presence: the answer to create, join and members. */
  RoomInfo: 90,
  RoomListed: 91,
  /** Delivery counts of the sender's room messages. */
  RoomReceipt: 92,
  RoomWhoIs: 93,
  /** A member of one of your rooms came online or went offline. */
  RoomPresence: 94,
  /** You are no longer a member of the room (you left, or the owner removed you). */
  RoomGone: 95,
  /** You were invited to a private room. */
  RoomInvited: 96,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Delivery states a sender sees for one of its messages, in the order they can happen. */
export const Delivery = {
  /** The server holds the message and is handing it to the online recipient. */
  Accepted: 'accepted',
  /** Durably stored for an offline recipient; survives a server crash. */
  Queued: 'queued',
  /** The recipient's client acknowledged it. Final. */
  Delivered: 'delivered',
} as const;
export type Delivery = (typeof Delivery)[keyof typeof Delivery];

/** Default limits. The server may announce tighter or looser ones in `welcome`. */
export const Limits = {
  /** Message text, in UTF-8 bytes. */
  maxTextBytes: 16 * 1024,
  /** Longest accepted name after NFKC normalisation, in code points. */
  maxNameChars: 32,
  minPasswordChars: 8,
  maxPasswordChars: 1024,
  /** Message ids are made by the sending client (nanoid: 21 chars); this bounds what we accept. */
  minIdChars: 8,
  maxIdChars: 64,
  /** Names in one `follow` frame. */
  maxFollow: 1000,
  /** Delivery tags in one `ack` frame. */
  maxAckTags: 1000,
  /** Media chunk payload, in bytes. */
  maxChunkBytes: 256 * 1024,
  /** Largest control frame the server decodes. Chunk frames may be up to header + maxChunkBytes. */
  maxControlFrameBytes: 64 * 1024,
  /** Concurrent streams a user may take part in (as sender or recipient). */
  maxStreamsPerUser: 4,
  /** File name length in an offer, in code points. */
  maxFileNameChars: 255,
  /** Codec/MIME string length in an offer. */
  maxCodecChars: 200,
  /** Message ids in one `read` frame. */
  maxReadIds: 200,
  /** Public rooms in one `roomListed` frame. */
  maxRoomList: 500,
} as const;

/**
 * Typing indicators: a client typing to a contact sends `typing on` at most every `renewMs`, and `typing off`
 * when it stops (sent, cleared, or switched away). A recipient shows "typing" for `expiryMs` after the last
 * `on` and drops it at once on `off`, a message from that contact, or a lost connection, so an indicator never
 * outlives a sender that vanished.
 */
export const Typing = { renewMs: 3000, expiryMs: 6000 } as const;

// ---------------------------------------------------------------------------------------------------------
// Client -> server frames

export interface HelloFrame { t: typeof Op.Hello; v: number; follow?: string[] }
/**
 * A text to a contact. `send` also addresses a room: with `room` instead of `to` (see RoomSendFrame), exactly
 * one of the two; frames without `room` are the one-to-one frames of before, unchanged.
 */
export interface SendFrame { t: typeof Op.Send; id: string; to: string; room?: undefined; text: string }
/** A text to a room you are a member of: `send` with `room` (the room's name) and no `to`. */
export interface RoomSendFrame { t: typeof Op.Send; id: string; to?: undefined; room: string; text: string }
/** Acknowledges messages by the delivery tags the server put on them. */
export interface AckFrame { t: typeof Op.Ack; tags: number[] }
/** Replaces the set of names whose presence this session follows. */
export interface FollowFrame { t: typeof Op.Follow; names: string[] }
export interface PingFrame { t: typeof Op.Ping; n?: number }
/** Read receipts: `ids` are messages from `to` (their original sender) now on the reader's screen. */
export interface ReadFrame { t: typeof Op.Read; to: string; ids: string[] }
export interface TypingFrame { t: typeof Op.Typing; to: string; on: boolean }
export interface StreamOfferFrame {
  t: typeof Op.StreamOffer;
  /** Client-made reference so the sender can match the server's `streamOffered`/errors to its offer. */
  ref: string;
  to: string;
  name: string;
  size: number;
  /** Full MIME type with codecs, e.g. `video/mp4; codecs="avc1.64001f,mp4a.40.2"`. */
  mime: string;
  /** Container hint: `mp4`, `fmp4`, `webm` or `other`. */
  container: string;
}
export interface StreamAnswerFrame { t: typeof Op.StreamAnswer; sid: number; accept: boolean; credit?: number }
/** Recipient grants the sender `bytes` more bytes of stream `sid`. */
export interface StreamCreditFrame { t: typeof Op.StreamCredit; sid: number; bytes: number }
/** Sender says every byte of `sid` has been sent. */
export interface StreamEndFrame { t: typeof Op.StreamEnd; sid: number }
export interface StreamCancelFrame { t: typeof Op.StreamCancel; sid: number; reason?: string }
/** `[start, end)` byte ranges of a file, sorted, apart, at most MAX_STREAM_RUNS of them. */
export type ByteRanges = [start: number, end: number][];
/**
 * The recipient of transfer `tid` from `from`, cut by a disconnect, asks to go on: `held` are the bytes it has
 * kept, `credit` its first grant for the new stream (as in `streamAnswer`).
 */
export interface StreamResumeFrame { t: typeof Op.StreamResume; tid: string; from: string; held: ByteRanges; credit?: number }
/** Gives up the cut transfer `tid` between this session and `peer` (the other side, sender or recipient). */
export interface StreamDropFrame { t: typeof Op.StreamDrop; tid: string; peer: string }

/** Creates a room you own; public unless `private`. Room names follow the account name rules. */
export interface RoomCreateFrame { t: typeof Op.RoomCreate; room: string; private?: boolean }
/** Joins a public room, or a private one you were invited to; you get its recent history. */
export interface RoomJoinFrame { t: typeof Op.RoomJoin; room: string }
export interface RoomLeaveFrame { t: typeof Op.RoomLeave; room: string }
/** Owner only: lets `name` join a private room (and tells it, if online). */
export interface RoomInviteFrame { t: typeof Op.RoomInvite; room: string; name: string }
/** Owner only: `name` is no longer a member and gets nothing of the room from then on. */
export interface RoomRemoveFrame { t: typeof Op.RoomRemove; room: string; name: string }
export interface RoomListFrame { t: typeof Op.RoomList }
export interface RoomOwnerFrame { t: typeof Op.RoomOwner; room: string; name: string }
export interface RoomMembersFrame { t: typeof Op.RoomMembers; room: string }
export interface RoomWhoFrame { t: typeof Op.RoomWho; room: string; id: string }

export type ClientFrame =
  | HelloFrame | SendFrame | RoomSendFrame | AckFrame | FollowFrame | PingFrame | ReadFrame | TypingFrame
  | StreamOfferFrame | StreamAnswerFrame | StreamCreditFrame | StreamEndFrame | StreamCancelFrame
  | StreamResumeFrame | StreamDropFrame
  | RoomCreateFrame | RoomJoinFrame | RoomLeaveFrame | RoomInviteFrame | RoomRemoveFrame | RoomListFrame
  | RoomOwnerFrame | RoomMembersFrame | RoomWhoFrame;

// ---------------------------------------------------------------------------------------------------------
// Server -> client frames

export interface WelcomeFrame {
  t: typeof Op.Welcome;
  v: number;
  /** The signed-in name as registered (display form). */
  name: string;
  /** Server time, ms since epoch. */
  now: number;
  limits: {
    maxTextBytes: number;
    maxChunkBytes: number;
    maxStreamsPerUser: number;
    maxFileBytes: number;
    /** Most credit the server lets a recipient have outstanding per stream; larger grants are clamped. */
    streamWindowBytes: number;
  };
}
/**
 * Delivery states of the sender's messages, batched: one frame per event-loop turn carries every change since
 * the last one, each message at most once with its latest state (an `accepted` overtaken by `delivered` within
 * the turn is not sent).
 */
export interface ReceiptFrame { t: typeof Op.Receipt; items: ReceiptItem[] }
/** `[message id, recipient name, state]`. */
export type ReceiptItem = [id: string, to: string, state: Delivery];
export interface MessageFrame {
  t: typeof Op.Message;
  /** Delivery tag: acknowledge with `ack`. Unique within this connection. */
  tag: number;
  id: string;
  /** Stamped by the server from the sender's session; never taken from a client. */
  from: string;
  text: string;
  /** Acceptance time stamped by the server, ms since epoch. */
  ts: number;
  /**
   * True when it waited in the offline queue; for a room, when it was in the room's log before this session
   * opened the room (recent history, or missed while away).
   */
  queued?: boolean;
  /** Set on room messages: the room (display name) it was sent to, and its place in the room's one order. */
  room?: string;
  rseq?: number;
  /** Set on the room's own lines: what happened to the member named in `from` (then `text` is empty). */
  line?: RoomLineName;
}
/** Stamped by the server: `by` is the reader's session name, never taken from a client. */
export interface ReadByFrame { t: typeof Op.ReadBy; by: string; ids: string[] }
export interface TypingFromFrame { t: typeof Op.TypingFrom; from: string; on: boolean }
export interface PresenceFrame { t: typeof Op.Presence; name: string; online: boolean }
export interface ErrorFrame {
  t: typeof Op.Error;
  code: ErrorCodeName;
  message: string;
  /** The message id, stream ref or stream id the error is about, when there is one. */
  ref?: string | number;
}
export interface TakeoverFrame { t: typeof Op.Takeover; message: string }
export interface PongFrame { t: typeof Op.Pong; n?: number; now: number }
export interface ShutdownFrame { t: typeof Op.Shutdown; message: string }
export interface StreamOfferedFrame {
  t: typeof Op.StreamOffered;
  sid: number;
  /** Echo of the sender's `ref`; present only on the copy sent to the sender. */
  ref?: string;
  /** The transfer's id (the offer's `ref`), the same on both copies: a resume names the transfer by it. */
  tid: string;
  from: string;
  to: string;
  name: string;
  size: number;
  mime: string;
  container: string;
}
export interface StreamAnsweredFrame { t: typeof Op.StreamAnswered; sid: number; accept: boolean }
export interface StreamGrantedFrame { t: typeof Op.StreamGranted; sid: number; bytes: number }
export interface StreamEndedFrame { t: typeof Op.StreamEnded; sid: number; bytes: number }
export interface StreamAbortedFrame {
  t: typeof Op.StreamAborted;
  sid: number;
  reason: AbortReasonName;
  message: string;
  /**
   * Present when a disconnect or takeover cut an accepted stream: the transfer is paused, not over, and the
   * server keeps it resumable for this many milliseconds (see `streamResume`).
   */
  resumeMs?: number;
}
/** A cut transfer goes on as stream `sid`; `held` are the bytes the recipient has, which the sender skips. */
export interface StreamResumedFrame { t: typeof Op.StreamResumed; sid: number; tid: string; from: string; to: string; size: number; held: ByteRanges }
export interface StreamResumableFrame { t: typeof Op.StreamResumable; tid: string; from: string }
/** `reason`: which side gave the transfer up. */
export interface StreamDroppedFrame { t: typeof Op.StreamDropped; tid: string; from: string; to: string; reason: AbortReasonName }

/** What happened in a room, as a line in its log. */
export type RoomLineName = 'created' | 'joined' | 'left' | 'removed' | 'owner';
export interface RoomInfoFrame {
  t: typeof Op.RoomInfo;
  room: string;
  owner: string;
  private: boolean;
  /** `[name, online]` of every member. */
  members: Array<[name: string, online: boolean]>;
}
export interface RoomListedFrame { t: typeof Op.RoomListed; rooms: Array<{ room: string; owner: string }> }
/**
 * `[message id, room, delivered, of]`: `of` members besides the sender, `delivered` of them have the message.
 * The first item of a message (delivered 0 or more) means it is accepted and in the room's log, durably.
 */
export type RoomReceiptItem = [id: string, room: string, delivered: number, of: number];
export interface RoomReceiptFrame { t: typeof Op.RoomReceipt; items: RoomReceiptItem[] }
export interface RoomWhoIsFrame { t: typeof Op.RoomWhoIs; room: string; id: string; delivered: string[]; pending: string[] }
export interface RoomPresenceFrame { t: typeof Op.RoomPresence; room: string; name: string; online: boolean }
export interface RoomGoneFrame { t: typeof Op.RoomGone; room: string; reason: 'left' | 'removed' }
export interface RoomInvitedFrame { t: typeof Op.RoomInvited; room: string; by: string }

export type ServerFrame =
  | RoomInfoFrame | RoomListedFrame | RoomReceiptFrame | RoomWhoIsFrame | RoomPresenceFrame | RoomGoneFrame
  | RoomInvitedFrame
  | WelcomeFrame | ReceiptFrame | MessageFrame | PresenceFrame | ErrorFrame | TakeoverFrame | PongFrame
  | ShutdownFrame | ReadByFrame | TypingFromFrame | StreamOfferedFrame | StreamAnsweredFrame | StreamGrantedFrame | StreamEndedFrame
  | StreamAbortedFrame | StreamResumedFrame | StreamResumableFrame | StreamDroppedFrame;

export type ControlFrame = ClientFrame | ServerFrame;

import type { ErrorCodeName, AbortReasonName } from './codes.ts';
