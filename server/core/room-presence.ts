/**
 * What a room's members are told about it: the room's info frame (its members, each online or not) and each
 * member's coming online or going offline, to the members that have a pipe of the room.
 */
import { Op, type RoomInfoFrame } from '../../shared/protocol.ts';
import type { RoomPipes } from './room-pipes.ts';
import type { SessionLookup } from './room-ports.ts';
import type { RoomState } from './room-state.ts';
import type { Session } from './session.ts';

export class RoomPresence {
  constructor(private readonly online: SessionLookup, private readonly pipes: RoomPipes) {}

  info(st: RoomState): RoomInfoFrame {
    return {
      t: Op.RoomInfo, room: st.rec.name, owner: st.rec.owner, private: st.rec.private,
      members: [...st.members].map(([key, m]) => [m.name, this.isOnline(key)]),
    };
  }

  private isOnline(key: string): boolean {
    const s = this.online.get(key);
    return s !== undefined && s.phase !== 'closed' && s.phase !== 'hello';
  }

  /** Tells the room's other online members that `s`'s member came online or went offline. */
  announce(st: RoomState, s: Session, online: boolean): void {
    for (const key of st.members.keys()) {
      if (key === s.key) continue;
      const other = this.online.get(key);
      if (other && this.pipes.has(other, st.rec.key)) other.send({ t: Op.RoomPresence, room: st.rec.name, name: s.name, online });
    }
  }
}
