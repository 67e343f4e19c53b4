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
  StreamOffer: 20,
  StreamAnswer: 21,
  StreamCredit: 22,
  StreamEnd: 23,
  StreamCancel: 24,
  // server -> client
  Welcome: 64,
  Receipt: 65,
  Message: 66,
  Presence: 67,
  Error: 68,
  Takeover: 69,
  Pong: 70,
  Shutdown: 71,
  StreamOffered: 80,
  StreamAnswered: 81,
  StreamGranted: 82,
  StreamEnded: 83,
  StreamAborted: 84,
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
} as const;

// ---------------------------------------------------------------------------------------------------------
// Client -> server frames

export interface HelloFrame { t: typeof Op.Hello; v: number; follow?: string[] }
export interface SendFrame { t: typeof Op.Send; id: string; to: string; text: string }
/** Acknowledges messages by the delivery tags the server put on them. */
export interface AckFrame { t: typeof Op.Ack; tags: number[] }
/** Replaces the set of names whose presence this session follows. */
export interface FollowFrame { t: typeof Op.Follow; names: string[] }
export interface PingFrame { t: typeof Op.Ping; n?: number }
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

export type ClientFrame =
  | HelloFrame | SendFrame | AckFrame | FollowFrame | PingFrame
  | StreamOfferFrame | StreamAnswerFrame | StreamCreditFrame | StreamEndFrame | StreamCancelFrame;

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
  /** True when it waited in the offline queue. */
  queued?: boolean;
}
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
export interface StreamAbortedFrame { t: typeof Op.StreamAborted; sid: number; reason: AbortReasonName; message: string }

export type ServerFrame =
  | WelcomeFrame | ReceiptFrame | MessageFrame | PresenceFrame | ErrorFrame | TakeoverFrame | PongFrame
  | ShutdownFrame | StreamOfferedFrame | StreamAnsweredFrame | StreamGrantedFrame | StreamEndedFrame
  | StreamAbortedFrame;

export type ControlFrame = ClientFrame | ServerFrame;

import type { ErrorCodeName, AbortReasonName } from './codes.ts';
