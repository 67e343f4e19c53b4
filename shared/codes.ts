/**
 * Error codes, WebSocket close codes and stream abort reasons: the one catalogue, shared by server and
 * client and mirrored in docs/protocol.md. Each entry says who sends it and what the receiver should do.
 */

/** Codes carried by `error` frames and by HTTP error bodies `{ error: { code, message } }`. */
export const ErrorCode = {
  /** Frame is not valid msgpack, not a map, or a field has the wrong type. Client: fix the client; not retryable. */
  BAD_FRAME: 'BAD_FRAME',
  /** Opcode the server does not know. Client: check protocol version. */
  UNKNOWN_TYPE: 'UNKNOWN_TYPE',
  /** Text WebSocket frame; Parley speaks binary only. */
  TEXT_FRAME: 'TEXT_FRAME',
  /** Frame larger than the server decodes. */
  TOO_LARGE: 'TOO_LARGE',
  /** A frame other than `hello` before `hello`, or a second `hello`. */
  NOT_READY: 'NOT_READY',
  /** `hello.v` is not a version the server speaks. The server closes with VERSION. */
  VERSION_UNSUPPORTED: 'VERSION_UNSUPPORTED',
  /** Message id missing or not 8..64 of [A-Za-z0-9_-]. */
  BAD_ID: 'BAD_ID',
  /** Name does not satisfy the naming rules. */
  BAD_NAME: 'BAD_NAME',
  /** Password too short or too long. */
  BAD_PASSWORD: 'BAD_PASSWORD',
  /** Message text is empty (after trimming whitespace). */
  TEXT_EMPTY: 'TEXT_EMPTY',
  /** Message text is over the byte limit. */
  TEXT_TOO_LONG: 'TEXT_TOO_LONG',
  /** No account has that name. */
  UNKNOWN_CONTACT: 'UNKNOWN_CONTACT',
  /** Recipient's offline queue is at its cap. Client: tell the user; retry later. */
  QUEUE_FULL: 'QUEUE_FULL',
  /** The durable store cannot be reached; nothing was queued. Client: retry later (the outbox does). */
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  /** Too many frames or sign-ins in a short time. Client: slow down. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** Registration: the name (ignoring case) is taken. */
  NAME_TAKEN: 'NAME_TAKEN',
  /**
   * Registration: the name would pass for another by looks (Unicode TS #39): an invisible character, a
   * confusable mix of scripts, a decorating combining mark, or the same skeleton as an existing account's
   * name. The message says which. Client: show it; pick another name.
   */
  NAME_CONFUSABLE: 'NAME_CONFUSABLE',
  /** Sign-in: name or password wrong (never says which). */
  BAD_CREDENTIALS: 'BAD_CREDENTIALS',
  /** HTTP/upgrade: no valid session. Client: sign in again. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** Upgrade: Origin not allowed. */
  FORBIDDEN_ORIGIN: 'FORBIDDEN_ORIGIN',
  /** HTTP: request body malformed. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** HTTP: no such route. */
  NOT_FOUND: 'NOT_FOUND',
  /** The server is shutting down. Client: reconnect with backoff. */
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** Unexpected server fault; logged server side. */
  INTERNAL: 'INTERNAL',
  // streams
  /** Offer to a user who is not online. */
  RECIPIENT_OFFLINE: 'RECIPIENT_OFFLINE',
  /** Stream id unknown, finished, or not this session's to use that way. */
  STREAM_UNKNOWN: 'STREAM_UNKNOWN',
  /** Chunk or end before the recipient accepted. */
  STREAM_NOT_ACCEPTED: 'STREAM_NOT_ACCEPTED',
  /** Too many concurrent streams for the sender or the recipient. */
  STREAM_LIMIT: 'STREAM_LIMIT',
  /**
   * Accepting this stream would take the server past what all streams together may hold (STREAM_MEMORY_MB).
   * Sent to the recipient that accepted; the stream is aborted for both. Client: try again later.
   */
  STREAM_CAPACITY: 'STREAM_CAPACITY',
  /** Chunk over the chunk limit, or declared size over the file limit. */
  CHUNK_TOO_LARGE: 'CHUNK_TOO_LARGE',
  FILE_TOO_LARGE: 'FILE_TOO_LARGE',
  /** More bytes than the offer declared, or `end` before all declared bytes. */
  STREAM_SIZE_MISMATCH: 'STREAM_SIZE_MISMATCH',
  /** Chunk beyond the credit the recipient granted. */
  STREAM_NO_CREDIT: 'STREAM_NO_CREDIT',
  /** Chunk overlaps bytes already sent, lies outside the file, or begins more byte ranges than allowed (8). */
  STREAM_BAD_OFFSET: 'STREAM_BAD_OFFSET',
  /** Offer to yourself. */
  STREAM_SELF: 'STREAM_SELF',
  /**
   * `streamResume` or `streamDrop` for no paused transfer between you and that person: it was never cut, it
   * finished, one side gave it up, it expired (STREAM_RESUME_SEC) or the server restarted. Client: give up
   * the transfer; the sender may offer the file again.
   */
  TRANSFER_UNKNOWN: 'TRANSFER_UNKNOWN',
  // rooms
  /** No room has that name. Client: check the name, or create it. */
  ROOM_UNKNOWN: 'ROOM_UNKNOWN',
  /** Create: a room with that name (ignoring case) exists. Client: join it, or pick another name. */
  ROOM_EXISTS: 'ROOM_EXISTS',
  /** Send, leave, members, who or an owner's action in a room you are not a member of (or, for a name, it is not). */
  NOT_A_MEMBER: 'NOT_A_MEMBER',
  /** Invite, remove or hand over by a member who is not the room's owner. */
  NOT_THE_OWNER: 'NOT_THE_OWNER',
  /** Join of a private room without an invitation. Client: ask the owner for one. */
  NOT_INVITED: 'NOT_INVITED',
  /** Join or invite beyond the member limit (ROOM_MEMBERS). */
  ROOM_FULL: 'ROOM_FULL',
  /** The owner tried to leave (or remove itself): hand the room over first. */
  OWNER_CANNOT_LEAVE: 'OWNER_CANNOT_LEAVE',
  /** `roomWho` about a message this server no longer tracks, or not yours. */
  MESSAGE_UNKNOWN: 'MESSAGE_UNKNOWN',
  /**
   * No longer sent (rooms cross nodes now): servers before that refused every room frame on several nodes with it.
   * Kept for clients that still know it. Client: say rooms are not available; nothing was done.
   */
  ROOMS_SINGLE_NODE: 'ROOMS_SINGLE_NODE',
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * WebSocket close codes. 4000-4999 are Parley's own; the rest are RFC 6455's as uWS sends them.
 */
export const CloseCode = {
  /** Sign-out, or the client closed. */
  NORMAL: 1000,
  /** Server shutting down. Client: reconnect with backoff. */
  GOING_AWAY: 1001,
  /** Persistent malformed input. Client: bug; do not reconnect in a loop. */
  PROTOCOL: 4000,
  /** A newer sign-in of the same name took over. Client: do NOT reconnect; offer to sign in again. */
  TAKEOVER: 4001,
  /** Session expired, signed out or unknown. Client: sign in again. */
  SESSION_ENDED: 4002,
  /** Frame flood beyond the per-connection rate limit. Client: reconnect after a pause. */
  FLOOD: 4003,
  /** `hello` missing in time or protocol version not spoken. Client: upgrade; do not reconnect. */
  VERSION: 4004,
  /** Nothing received for the idle timeout. Client: reconnect when the user is back. */
  IDLE: 4005,
  /** The same session opened a newer socket (e.g. after a network change). Client: nothing to do. */
  REPLACED: 4006,
  /**
   * The node could not claim the name cluster-wide (its bus to the other nodes is down), so it cannot know who
   * else holds it. Client: reconnect with backoff (the balancer may pick another node; this one recovers by itself).
   */
  TRY_AGAIN: 4007,
} as const;
export type CloseCodeName = keyof typeof CloseCode;

/** Why a stream ended early, carried in `streamAborted`. */
export const AbortReason = {
  /** The sender cancelled. */
  SENDER_CANCELLED: 'SENDER_CANCELLED',
  /** The recipient cancelled. */
  RECIPIENT_CANCELLED: 'RECIPIENT_CANCELLED',
  /** The recipient declined the offer. */
  DECLINED: 'DECLINED',
  SENDER_DISCONNECTED: 'SENDER_DISCONNECTED',
  RECIPIENT_DISCONNECTED: 'RECIPIENT_DISCONNECTED',
  /** Either party's session was taken over by a newer sign-in. */
  TAKEOVER: 'TAKEOVER',
  SERVER_SHUTDOWN: 'SERVER_SHUTDOWN',
  /** The sender broke the stream's rules (size, credit, offset). */
  PROTOCOL: 'PROTOCOL',
} as const;
export type AbortReasonName = keyof typeof AbortReason;
