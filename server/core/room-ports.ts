/**
 * What `Rooms` is given from outside the rooms: its options, the sessions it delivers to, and (several nodes) where
 * each room is served. Re-exported by rooms.ts, where callers import them.
 */
import type { AckFrame, ServerFrame } from '../../shared/protocol.ts';
import type { OwnedRoomFrame } from './router.ts';
import type { Session } from './session.ts';

export interface RoomOptions {
  /** Log entries a newcomer is given on joining (ROOM_HISTORY). */
  historyCount: number;
  /** Members a room may have (ROOM_MEMBERS). */
  memberLimit: number;
  /** Entries a room's log may hold (QUEUE_CAP, as a one-to-one queue). */
  queueCap: number;
  /** Entries older than this are not delivered and are purged. */
  retentionMs: number;
  /** Entries read from the store per fetch. */
  batch: number;
  /** Unacknowledged room messages per session and room. */
  window: number;
  /**
   * A deployment of several nodes (NATS_URL): each room is served by its owner node (`RoomPlacement`, made by
   * `server/core/room-nodes.ts`; docs/architecture.md, "Rooms across nodes").
   */
  severalNodes?: boolean;
}

/** The sessions rooms deliver to: this node's, and on an owner node its proxies of members elsewhere. */
export interface SessionLookup {
  get(key: string): Session | undefined;
}

/**
 * Where rooms are served when there are several nodes (`server/core/room-nodes.ts`). Absent on one node, where
 * every room is served here. A node serves (owns) only the rooms whose claim it holds; what reaches it for another
 * room goes to that room's owner.
 */
export interface RoomPlacement {
  /** Whether this node owns room `key`; claims it when nobody does. Rejects with a RouterError (bus down). */
  here(key: string): Promise<boolean>;
  /** A room frame of `s` for a room owned elsewhere: run there. */
  forward(s: Session, key: string, frame: OwnedRoomFrame): void;
  /** `s`'s member of room `key`, owned elsewhere, is to be served by the owner (sign-in, or the room moved). */
  attach(s: Session, key: string): void;
  /** This node no longer owns room `key`: `s`, a proxy of a member elsewhere, is to attach to its new owner. */
  moved(s: Session, key: string): void;
  /** Acknowledgements of room messages sent by other nodes' owners. */
  ack(s: Session, f: AckFrame): void;
  /** `s` closed: owners elsewhere drop its proxies. */
  gone(s: Session): void;
  /** A frame for the holder of name `key`, which has no session here (an invitation). Best effort. */
  tell(key: string, frame: ServerFrame): void;
  /** Whether this node owns room `key` as far as it knows now (synchronous: the last answer of `here`). */
  owns(key: string): boolean;
  /** This node gave room `key` up (`unload`) and the appends it had issued are done: tell the new owner. */
  settled(key: string): void;
}
