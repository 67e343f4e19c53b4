/**
 * Accounts and sessions: registration, sign-in with rate limits, sign-out, token authentication, and the
 * bookkeeping that makes "one live session per name" hold across racing sign-ins.
 *
 * A session token is 32 random bytes (base64url) handed to the client once; the store keeps only its SHA-256.
 * Sign-in for a name runs its final step (write the session, mark older ones replaced, tell the hub) under a
 * per-name lock, so of N racing sign-ins exactly one ends up current and every other one is marked replaced.
 * Across processes sharing a store, the store's `replaceSessions` decides: the newest session stays live.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Limits } from '../../shared/protocol.ts';
import { confusableReason, nameKey, normalizeName } from '../../shared/names.ts';
import { skeleton } from './confusables.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import { hashPassword, verifyPassword, type ScryptParams } from './passwords.ts';
import { KeyedMutex } from './mutex.ts';
import { RecentMap } from './recent.ts';
import { KeyedLimiter } from './ratelimit.ts';
import { StoreUnavailableError, type SessionRecord, type Store } from './store.ts';

export interface AccountsOptions {
  sessionTtlMs: number;
  scrypt: ScryptParams;
  /** Failed sign-ins allowed per name and per address: sustained rate per minute and burst. */
  signinFailuresPerMinute: number;
  signinFailureBurst: number;
  /** Registrations allowed per address: sustained rate per minute and burst. */
  registrationsPerMinute: number;
  registrationBurst: number;
}

export interface SignedIn { name: string; key: string; token: string; tokenHash: string; expires: number }

/** What an authenticated upgrade carries into the hub. */
export interface Auth {
  name: string;
  key: string;
  /** The session's in-memory id (see `sessionId`). */
  sid: string;
  expires: number;
  /**
   * When the session was signed in (`SessionRecord.created`, ms): its rank among the name's sessions, with `sid`
   * breaking ties (the store's `isNewerSession` order). The hub claims the name with it (`Router.claim`).
   */
  created: number;
  /** True when a newer sign-in took this session over: the socket is told so and closed at once. */
  replaced: boolean;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * What the server keeps in memory to tell sessions apart: the first 128 bits of the token hash as a
 * 16-character one-byte string, 32 bytes of heap per session where the hex hash takes 80. Still unguessable:
 * it keys the outage cache below, and a token whose hash shares another session's first 128 bits would take
 * about 2^128 tries to find.
 */
export function sessionId(tokenHash: string): string {
  return Buffer.from(tokenHash.slice(0, 32), 'hex').toString('latin1');
}

/** What the outage cache keeps of a session whose socket closed. */
type CachedSession = Pick<SessionRecord, 'key' | 'name' | 'created' | 'expires' | 'replacedAt'>;

/** Wraps store calls so an outage becomes the coded error clients understand. */
export async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreUnavailableError) throw new AppError('STORE_UNAVAILABLE', 'the message store is unavailable; try again shortly');
    throw err;
  }
}

/** Contact look-ups (`GET /api/contacts/:name`) one signed-in person may make per minute. */
export const CONTACT_LOOKUPS_PER_MINUTE = 30;

export class Accounts {
  private readonly failuresByName: KeyedLimiter;
  private readonly failuresByAddress: KeyedLimiter;
  private readonly registrationsByAddress: KeyedLimiter;
  private readonly lock = new KeyedMutex();
  /** Sign-in attempts per name key, one at a time (see `signIn`). */
  private readonly attempts = new KeyedMutex();
  /** Display names of accounts known to exist, by key: spares the store a read per message. */
  private readonly known = new Map<string, string>();
  /** Sessions whose socket closed, by session id, oldest first (outage fallback). */
  private readonly sessions = new RecentMap<string, CachedSession>(100_000);
  /**
   * Sessions signed out in this process, by session id (bounded: what matters is the moment around the sign-out).
   * A socket that authenticated just before the sign-out must not open, and the closing socket must not put
   * its session into the outage cache.
   */
  private readonly ended = new RecentMap<string, true>(10_000);
  /**
   * Session ids that sign-ins in this process marked replaced (bounded, like `ended`: what matters is the moment
   * between a socket's authentication and its opening; later, the store's `replacedAt` says it). Only what the
   * store replaced counts: a session id this process merely did not sign in may be newer, signed in on another
   * node, and must open here.
   */
  private readonly replaced = new RecentMap<string, true>(10_000);
  /**
   * Called after a sign-in, before it answers, with the session ids that sign-in replaced: the hub closes their
   * sockets, on this node at once and on others through the router (awaited). Only those: a session it did not
   * replace may be newer (a racing sign-in on another node).
   */
  onTakeover: (key: string, currentSid: string, replaced: readonly string[]) => void | Promise<void> = () => {};
  /** Called after a sign-out: the hub closes that session's socket. */
  onSignOut: (key: string, sid: string) => void = () => {};

  constructor(private readonly store: Store, private readonly opts: AccountsOptions, private readonly log: Logger) {
    const perMinute = opts.signinFailuresPerMinute / 60;
    this.failuresByName = new KeyedLimiter(perMinute, opts.signinFailureBurst);
    this.failuresByAddress = new KeyedLimiter(perMinute * 4, opts.signinFailureBurst * 4);
    this.registrationsByAddress = new KeyedLimiter(opts.registrationsPerMinute / 60, opts.registrationBurst);
  }

  /**
   * Cheap checks first (name, password, a taken name), then the address's budget, then the hash: a refused
   * registration costs no scrypt, and every one that reaches the hash was counted before it started.
   */
  async register(rawName: unknown, password: unknown, address: string): Promise<{ name: string }> {
    const name = normalizeName(rawName);
    if (!name) {
      throw new AppError('BAD_NAME', `a name is 1 to ${Limits.maxNameChars} letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    checkPassword(password);
    const reason = confusableReason(name);
    if (reason) throw new AppError('NAME_CONFUSABLE', `that name ${reason}; choose another`);
    const key = nameKey(name);
    if (await storeCall(() => this.store.getAccount(key))) throw new AppError('NAME_TAKEN', 'that name is taken');
    if (!this.registrationsByAddress.take(address)) {
      throw new AppError('RATE_LIMITED', 'too many registrations from this address; wait a minute and try again');
    }
    // Claimed before the account is made, so two look-alikes racing cannot both register. A claim whose
    // registration then fails stays with that key: only the same name can use it.
    const holder = await storeCall(() => this.store.claimSkeleton(skeleton(key), key));
    if (holder !== key) throw new AppError('NAME_CONFUSABLE', 'that name looks like an existing account\'s name; choose another');
    const passwordHash = await hashPassword(password, this.opts.scrypt);
    const created = await storeCall(() => this.store.createAccount({ key, name, passwordHash, created: Date.now() }));
    if (!created) throw new AppError('NAME_TAKEN', 'that name is taken');
    this.known.set(key, name);
    this.log.info({ user: name }, 'account registered');
    return { name };
  }

  async signIn(rawName: unknown, password: unknown, address: string): Promise<SignedIn> {
    const name = normalizeName(rawName);
    const key = name ? nameKey(name) : `invalid:${String(rawName).slice(0, 64)}`;
    // Attempts at one name take turns, and each is counted before any work (a success gives its token back:
    // only failures lock a name out). So N concurrent guesses cannot all be checked: once the budget is spent
    // the rest are refused without scrypt, and attempts at other names from one address each spend the
    // address's budget before their hash starts.
    return this.attempts.run(key, () => this.attempt(name, key, password, address));
  }

  private async attempt(name: string | null, key: string, password: unknown, address: string): Promise<SignedIn> {
    if (!this.failuresByAddress.peek(address) || !this.failuresByName.peek(key)) {
      throw new AppError('RATE_LIMITED', 'too many failed sign-ins; wait a minute and try again');
    }
    this.failuresByName.take(key);
    this.failuresByAddress.take(address);
    // The name field may hold a mistyped password: only an existing account's registered name is logged.
    const fail = (user?: string): never => {
      this.log.info({ user, address }, 'sign-in failed');
      throw new AppError('BAD_CREDENTIALS', 'wrong name or password');
    };
    if (!name || typeof password !== 'string' || password.length > Limits.maxPasswordChars) return fail();
    const account = await storeCall(() => this.store.getAccount(key));
    if (!account) {
      // Spend the same time as a real check so timing does not tell which names exist.
      await hashPassword(password, this.opts.scrypt).catch(() => undefined);
      return fail();
    }
    if (!(await verifyPassword(password, account.passwordHash))) return fail(account.name);
    this.failuresByName.refund(key);
    this.failuresByAddress.refund(address);
    this.known.set(key, account.name);

    const token = randomBytes(32).toString('base64url');
    const tokenHash = hashToken(token);
    const now = Date.now();
    const session: SessionRecord = { tokenHash, key, name: account.name, created: now, expires: now + this.opts.sessionTtlMs };
    await this.lock.run(key, async () => {
      await storeCall(() => this.store.putSession(session));
      const replaced = (await storeCall(() => this.store.replaceSessions(key, tokenHash, now))).map(sessionId);
      for (const sid of replaced) {
        this.sessions.delete(sid);
        this.replaced.set(sid, true);
      }
      this.log.info({ user: account.name, replaced: replaced.length }, 'signed in');
      await this.onTakeover(key, sessionId(tokenHash), replaced);
    });
    return { name: account.name, key, token, tokenHash, expires: session.expires };
  }

  async signOut(token: string): Promise<void> {
    const tokenHash = hashToken(token);
    const session = await storeCall(() => this.store.getSession(tokenHash));
    if (!session) return;
    await storeCall(() => this.store.deleteSession(tokenHash));
    const sid = sessionId(tokenHash);
    this.ended.set(sid, true);
    this.sessions.delete(sid);
    this.onSignOut(session.key, sid);
  }

  /**
   * Resolves a bearer token or cookie value to its session; null when unknown or expired. Sessions whose socket
   * closed are remembered (bounded), so during a store outage they can still reconnect; only new sign-ins need
   * the store.
   */
  async authenticate(token: string): Promise<Auth | null> {
    if (token.length < 16 || token.length > 128) return null;
    const tokenHash = hashToken(token);
    const sid = sessionId(tokenHash);
    let session: CachedSession | null;
    try {
      session = await this.store.getSession(tokenHash);
      if (!session) this.sessions.delete(sid);
    } catch (err) {
      const cached = this.sessions.get(sid);
      if (!(err instanceof StoreUnavailableError) || !cached) return storeCall(() => Promise.reject(err));
      session = cached;
    }
    if (!session || session.expires <= Date.now()) return null;
    // Sessions carry the display name, so a socket's authentication reads one small record; older sessions
    // without it cost an account read. Nothing is kept per authenticated session here: the hub's session
    // object has what it needs, and whether a newer sign-in took over is decided from `replaced`, which only
    // sign-ins in this process write (the store's `replacedAt` covers the rest).
    const name = session.name ?? (await this.lookup(session.key));
    if (name === null) return null;
    // One string for both when the display name is its own key (most names), rather than two equal ones.
    return { name: name === session.key ? session.key : name, key: session.key, sid, expires: session.expires, created: session.created, replaced: this.isReplaced(sid, session) };
  }

  /** Decided synchronously at the moment a socket opens, so two sockets of one name are never both live. */
  isReplaced(sid: string, session?: CachedSession): boolean {
    if (session?.replacedAt) return true;
    return this.replaced.get(sid) === true;
  }

  /** True when this session was signed out in this process (a socket that authenticated just before must not open). */
  isEnded(sid: string): boolean {
    return this.ended.get(sid) === true;
  }

  // ---- account changes from the settings panel ----

  /**
   * Changes the password of the signed-in session `token` once `current` checks out (wrong ones count as
   * failed sign-ins, with the same rate limits), and ends every other session of the name: their sockets close
   * with SESSION_ENDED and their tokens stop working. The session that asked stays signed in.
   */
  async changePassword(token: string, current: unknown, next: unknown): Promise<void> {
    const { key, tokenHash } = await this.reauthenticate(token, current);
    checkPassword(next);
    const passwordHash = await hashPassword(next, this.opts.scrypt);
    if (!(await storeCall(() => this.store.setPassword(key, passwordHash)))) throw new AppError('UNAUTHORIZED', 'the account is gone');
    const ended = await storeCall(() => this.store.deleteSessionsOf(key, tokenHash));
    for (const h of ended) this.endSession(key, sessionId(h));
    this.log.info({ user: key, ended: ended.length }, 'password changed');
  }

  /** Deletes the signed-in account once `password` checks out: its sessions (all end now) and its queue. */
  async deleteAccount(token: string, password: unknown): Promise<void> {
    const { key } = await this.reauthenticate(token, password);
    const ended = await storeCall(() => this.store.deleteSessionsOf(key));
    await storeCall(() => this.store.deleteAccount(key));
    this.known.delete(key);
    for (const h of ended) this.endSession(key, sessionId(h));
    this.log.info({ user: key }, 'account deleted');
  }

  /** The live session of `token` and its account, after checking the account's password again. */
  private async reauthenticate(token: string, password: unknown): Promise<{ key: string; tokenHash: string }> {
    const auth = await this.authenticate(token);
    if (!auth || auth.replaced) throw new AppError('UNAUTHORIZED', 'not signed in');
    if (!this.failuresByName.peek(auth.key)) throw new AppError('RATE_LIMITED', 'too many wrong passwords; wait a minute and try again');
    const account = await storeCall(() => this.store.getAccount(auth.key));
    if (!account) throw new AppError('UNAUTHORIZED', 'the account is gone');
    if (typeof password !== 'string' || password.length > Limits.maxPasswordChars || !(await verifyPassword(password, account.passwordHash))) {
      this.failuresByName.take(auth.key);
      throw new AppError('BAD_CREDENTIALS', 'wrong password');
    }
    return { key: auth.key, tokenHash: hashToken(token) };
  }

  /** Session `sid` was ended on another node: it must not open or reconnect here either. */
  forgetEnded(sid: string): void {
    this.ended.set(sid, true);
    this.sessions.delete(sid);
  }

  private endSession(key: string, sid: string): void {
    this.ended.set(sid, true);
    this.sessions.delete(sid);
    this.onSignOut(key, sid);
  }

  /**
   * Contact look-up for a signed-in person adding a name: the account's display name, or UNKNOWN_CONTACT.
   * Discloses nothing registration does not (it says "taken" for the same names); rate limited per asker,
   * CONTACT_LOOKUPS_PER_MINUTE with bursts of as many, so it cannot be used to list the accounts quickly.
   */
  async findContact(rawName: unknown, askerKey: string): Promise<{ name: string }> {
    const name = normalizeName(rawName);
    if (name === null) throw new AppError('BAD_NAME', 'not a valid name');
    if (!this.lookups.take(askerKey)) throw new AppError('RATE_LIMITED', 'too many contact look-ups; wait a minute');
    const found = await this.lookup(nameKey(name));
    if (found === null) throw new AppError('UNKNOWN_CONTACT', 'no account has that name');
    return { name: found };
  }

  private readonly lookups = new KeyedLimiter(CONTACT_LOOKUPS_PER_MINUTE / 60, CONTACT_LOOKUPS_PER_MINUTE);

  /** Display name for a key: from memory, else from the store. Null when no account has that name. */
  async lookup(key: string): Promise<string | null> {
    const cached = this.known.get(key);
    if (cached !== undefined) return cached;
    const account = await storeCall(() => this.store.getAccount(key));
    if (!account) return null;
    this.known.set(key, account.name);
    return account.name;
  }

  /**
   * Remembers a session whose socket just closed, so it can reconnect while the store is down. Sessions with a
   * live socket are not kept here: their socket's state has what is needed, and idle connections stay small.
   */
  rememberSession(sid: string, key: string, name: string, created: number, expires: number): void {
    if (this.isEnded(sid)) return; // its socket is closing because it signed out
    this.sessions.set(sid, { key, name, created, expires });
  }

  /** A session's socket opened: it no longer needs the outage cache. */
  forgetSession(sid: string): void {
    this.sessions.delete(sid);
  }

}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || [...password].length < Limits.minPasswordChars || password.length > Limits.maxPasswordChars) {
    throw new AppError('BAD_PASSWORD', `a password is at least ${Limits.minPasswordChars} characters`);
  }
}
