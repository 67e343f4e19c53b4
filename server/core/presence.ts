/**
 * Presence: who follows whom on this node, and telling followers when a name goes online or offline.
 */
import { encodeFrame } from '../../shared/codec.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';
import { Op, type FollowFrame } from '../../shared/protocol.ts';
import type { Session } from './session.ts';

export class Presence {
  /** Sessions of this node following each name key. A name nobody follows is not kept (no empty sets). */
  private readonly followers = new Map<string, Set<Session>>();

  /** Display name of each followed key, as followed (for announcements that carry only a key). */
  private readonly names = new Map<string, string>();

  constructor(
    /** The name's session on this node, if any. */
    private readonly online: (key: string) => { name: string } | undefined,
    /** Whether another node holds the name now (`Router.locate`); false when it cannot tell. */
    private readonly elsewhere: (key: string) => Promise<boolean>,
  ) {}

  /** Replaces what `s` follows with `f.names`, and tells it each one's presence now. */
  follow(s: Session, f: FollowFrame): void {
    const a = s.activity;
    this.unfollowAll(s);
    const follows = (a.follows = new Set());
    for (const raw of f.names) {
      const name = normalizeName(raw);
      if (!name) {
        s.error({ code: 'BAD_NAME', message: `not a valid name: ${raw.slice(0, 40)}`, ref: raw.slice(0, 40) });
        continue;
      }
      const key = nameKey(name);
      follows.add(key);
      let set = this.followers.get(key);
      if (!set) this.followers.set(key, (set = new Set()));
      set.add(s);
      this.names.set(key, name);
      const peer = this.online(key);
      s.send({ t: Op.Presence, name: peer?.name ?? name, online: peer !== undefined });
      // Not here: another node may hold it. Told when it does; the offline said just now stays true otherwise.
      if (!peer) void this.elsewhere(key).then((yes) => {
        if (yes && s.phase !== 'closed' && s.act?.follows?.has(key) && !this.online(key)) s.send({ t: Op.Presence, name, online: true });
      });
    }
  }

  /** After the bus was away: what every followed name is now, as the router sees it, to its followers here. */
  async refresh(): Promise<void> {
    for (const key of [...this.followers.keys()]) {
      if (this.online(key)) continue;
      const yes = await this.elsewhere(key);
      const name = this.names.get(key);
      if (name !== undefined && !this.online(key)) this.announce(key, name, yes);
    }
  }

  /** Takes the session out of the follow index. */
  unfollowAll(s: Session): void {
    const follows = s.act?.follows;
    if (!follows) return;
    for (const key of follows) {
      const set = this.followers.get(key);
      if (set?.delete(s) && set.size === 0) {
        this.followers.delete(key);
        this.names.delete(key);
      }
    }
    s.activity.follows = undefined;
  }

  /** Tells this node's followers of `key` that it went online or offline. */
  announce(key: string, name: string, online: boolean): void {
    const set = this.followers.get(key);
    if (!set) return;
    const bytes = encodeFrame({ t: Op.Presence, name, online });
    for (const f of set) if (f.phase !== 'closed') f.write(bytes);
  }
}
