/**
 * An in-memory peer that speaks the MongoDB wire protocol, for tests only.
 *
 * THIS IS NOT MONGODB. No MongoDB server can be installed on the development machines or in CI, so the
 * MongoDB adapter's tests talk to this stand-in through the official `mongodb` driver instead. It exists so
 * that the adapter's real code path (driver, connection pool, server monitoring, BSON on a socket, error
 * classes, reconnection) runs in every `npm test`; it is not evidence that the adapter works against a real
 * server. Run the suite with `MONGODB_URI` set for that.
 *
 * What it does: listens on 127.0.0.1 (port 0 by default), answers the driver's handshake (legacy OP_QUERY
 * `isMaster` first, then OP_MSG `hello`), and serves OP_MSG commands, including kind-1 document sequences:
 * hello / isMaster, ping, buildInfo, endSessions, insert, find / getMore / killCursors (real cursors with
 * batchSize), update (operators, replacement, pipeline, upsert with $setOnInsert), delete, findAndModify,
 * count, distinct, aggregate, createIndexes (unique, compound, sparse, partialFilterExpression, TTL spec kept),
 * listIndexes, dropIndexes, create, listCollections, drop, listDatabases, dropDatabase. Filters, update operators, sort,
 * projection and aggregation pipelines are evaluated by `mingo`; (de)serialisation is the `bson` package.
 * Unknown commands get `ok: 0` with code 59 (CommandNotFound), as a real server answers.
 *
 * For outage tests it can be stopped (listener closed, every open socket destroyed mid-conversation) and
 * started again on the same port, keeping its data or losing it, as the caller chooses.
 * `refuse(collection)` makes every command on one collection fail (code 1) until it is called with `null`;
 * `loseReplyOnce(command, collection)` carries out the next such command and closes its connection unanswered.
 *
 * What it does NOT model (do not write tests that rely on these behaving like MongoDB):
 * - durability: data lives in this process's memory only; `start({ wipe: true })` imitates a lost disk;
 * - transactions, sessions (lsid is accepted and ignored), retryable-write bookkeeping (txnNumber ignored),
 *   causal consistency, read / write concern (accepted and ignored; every write is "acknowledged");
 * - replication, sharding, change streams, the streaming (awaitable) hello protocol (it never sends a
 *   topologyVersion, so the driver polls), compression (OP_COMPRESSED closes the connection), auth / TLS;
 * - the TTL monitor: TTL indexes are stored and listed but documents never expire by themselves;
 * - concurrency: in the plain mode every command runs to completion before the next one starts, so each
 *   command is atomic, which is STRONGER than MongoDB (per-document atomicity only). Races between documents
 *   that MongoDB allows cannot happen here; races between commands (the ones an adapter must handle) still do.
 *   The `racy-updates` fault makes it WEAKER than MongoDB, as some wire-compatible servers are;
 * - multikey (array) index keys, collation, text / geo / hashed / wildcard indexes, most index use by the
 *   planner (it narrows candidates by equality on an index's first field, and reads a compound index in order
 *   for a limited query bound on its first field and ranged and sorted on a numeric second field; otherwise it
 *   scans), explain, hints;
 * - numeric BSON types: int32, int64 and double all become JS numbers, so `$type` checks and type-exact
 *   round trips differ; the 16 MiB reply limit and maxTimeMS are not enforced.
 *
 * Fault modes (`faults` option, chosen per test; each imitates what FerretDB 1.24 over PostgreSQL did, see
 * issue 10). None is on by default.
 * - `racy-updates`: `update` and `findAndModify` read the matching documents, yield to other connections, then
 *   write what they computed from that read. Concurrent `$inc` on one document lose increments and two
 *   conditional updates can both match the same state. Unique indexes are still checked at write time, so an
 *   insert (or an upsert's insert) that collides still fails with 11000: the only arbiter such servers offer.
 * - `bare-duplicate-key`: duplicate-key errors carry code 11000 and a message, but no `keyPattern` or
 *   `keyValue` and no index name in the message.
 * - `no-ttl-indexes`: `createIndexes` with `expireAfterSeconds` is refused with code 238 (NotImplemented).
 * - `close-on-existing-indexes`: `createIndexes` given more than one spec, at least one of which already
 *   exists, closes the connection without a reply.
 *
 * `delayMs` adds that much latency before each command is served (replies stay in order per connection), to
 * run tests on a store many times slower than the in-memory one and check none depends on store speed.
 *
 * As a separate process (so `MONGODB_URI` can point at it):
 *   node --import tsx test/support/mongo-standin.ts [--port N] [--faults a,b] [--delay-ms N]
 * prints `{"uri":"mongodb://127.0.0.1:N"}` on one stdout line once listening, then `{"created":"<db>"}` each time
 * a database is first created, and runs until SIGTERM / SIGINT.
 */
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { EJSON, Long, ObjectId, deserialize, serialize, type Document } from 'bson';
import { Query, aggregate as mingoAggregate, find as mingoFind, updateOne as mingoUpdateOne } from 'mingo';

/** Options for {@link startMongoStandin}. */
export interface MongoStandinOptions {
  /** Port to listen on; 0 (default) picks a free one, which is then kept across restarts. */
  port?: number;
  /** Fault modes to turn on (see the header). */
  faults?: readonly StandinFault[];
  /** Latency added before each command is served, in ms. Default 0. */
  delayMs?: number;
  /** Called with a database's name when a command first creates it (to audit what a test run made). */
  onDatabaseCreated?: (name: string) => void;
}

/** The fault modes, each described in the header. */
export const STANDIN_FAULTS = ['racy-updates', 'bare-duplicate-key', 'no-ttl-indexes', 'close-on-existing-indexes'] as const;
export type StandinFault = (typeof STANDIN_FAULTS)[number];

/** A running stand-in. Every method is safe to call in any state. */
export interface MongoStandin {
  /** `mongodb://127.0.0.1:<port>`: no database name, so clients choose their own. */
  readonly uri: string;
  readonly host: string;
  readonly port: number;
  /** True while it accepts connections. */
  readonly running: boolean;
  /** Closes the listener and destroys every open socket (in-flight commands get no reply). Data is kept. */
  stop(): Promise<void>;
  /** Synchronous {@link stop} for the middle of traffic: nothing is awaited, so no reply slips out. */
  kill(): void;
  /** Listens again on the same port; `wipe: true` first drops every database (a lost disk). */
  start(options?: { wipe?: boolean }): Promise<void>;
  /** {@link stop} then {@link start}. */
  restart(options?: { wipe?: boolean }): Promise<void>;
  /** Final teardown: stops and drops all data. */
  close(): Promise<void>;
  /** How many times each command name was received since start-up (for asserting batching). */
  commandCounts(): ReadonlyMap<string, number>;
  /** Copies of the documents of one collection in natural order, for white-box assertions. */
  documents(db: string, collection: string): Document[];
  /**
   * While set, every command on a collection of that name fails with code 1 (InternalError), as a server with a
   * broken table would answer; `null` serves it again. Other collections are served as usual.
   */
  refuse(collection: string | null): void;
  /** Commands refused so far (see `refuse`). */
  readonly refusals: number;
  /**
   * The next `command` (e.g. `insert`) on `collection` is carried out, then its connection is closed instead of
   * answered: the write landed, the client sees a network error (as when a server or the network fails between
   * the two).
   */
  loseReplyOnce(command: string, collection: string): void;
}

/** Starts a stand-in on 127.0.0.1. */
export async function startMongoStandin(options: MongoStandinOptions = {}): Promise<MongoStandin> {
  for (const fault of options.faults ?? []) {
    if (!STANDIN_FAULTS.includes(fault)) throw new Error(`stand-in: unknown fault mode ${String(fault)}`);
  }
  const engine = new Engine(new Set(options.faults ?? []), options.onDatabaseCreated ?? (() => undefined));
  const delayMs = options.delayMs ?? 0;
  const host = '127.0.0.1';
  const sockets = new Set<net.Socket>();
  const counts = new Map<string, number>();
  let server: net.Server | null = null;
  let port = options.port ?? 0;
  let nextConnectionId = 1;

  const listen = async (): Promise<void> => {
    const srv = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      new WireConnection(socket, engine, nextConnectionId++, counts, delayMs);
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      // The same port on restart: a client's reconnect must find the server where it left it.
      srv.listen({ host, port, exclusive: true }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    const address = srv.address();
    if (address === null || typeof address === 'string') throw new Error('stand-in: no TCP address');
    port = address.port;
    server = srv;
  };

  const halt = (): Promise<void> => {
    const srv = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    engine.killAllCursors();
    if (srv === null) return Promise.resolve();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  };

  await listen();

  const standin: MongoStandin = {
    host,
    get port() {
      return port;
    },
    get uri() {
      return `mongodb://${host}:${port}`;
    },
    get running() {
      return server !== null;
    },
    stop: halt,
    kill() {
      void halt();
    },
    async start(startOptions = {}) {
      if (startOptions.wipe) engine.wipe();
      if (server === null) await listen();
    },
    async restart(restartOptions = {}) {
      await halt();
      await standin.start(restartOptions);
    },
    async close() {
      await halt();
      engine.wipe();
    },
    commandCounts: () => new Map(counts),
    documents: (db, collection) => engine.dump(db, collection),
    refuse: (collection) => {
      engine.refused = collection;
    },
    get refusals() {
      return engine.refusals;
    },
    loseReplyOnce: (command, collection) => {
      engine.loseReply = { command, collection };
    },
  };
  return standin;
}

// ---------------------------------------------------------------------------------------------------------
// Wire protocol

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;
const MSG_CHECKSUM_PRESENT = 1 << 0;
const MSG_MORE_TO_COME = 1 << 1;
const HEADER_SIZE = 16;
const MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024;
const MAX_MESSAGE_SIZE = 48_000_000;
const MAX_WRITE_BATCH_SIZE = 100_000;
/** MongoDB 7.0: inside the window driver v7 supports (9..29). */
const MAX_WIRE_VERSION = 21;
const DEFAULT_BATCH_SIZE = 101;

const DESERIALIZE_OPTIONS = { promoteLongs: true, promoteValues: true, promoteBuffers: false } as const;

let nextRequestId = 1;

/** One client socket: frames messages, hands commands to the engine, writes replies. */
class WireConnection {
  private buffered: Buffer = Buffer.alloc(0);
  /** Messages are served one after another per connection, as a server does, also when serving awaits. */
  private serving: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: net.Socket,
    private readonly engine: Engine,
    private readonly connectionId: number,
    private readonly counts: Map<string, number>,
    private readonly delayMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // A destroyed peer is normal in outage tests; the 'close' handler in the server does the bookkeeping.
    socket.on('error', () => socket.destroy());
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4) {
      const length = this.buffered.readInt32LE(0);
      if (length < HEADER_SIZE || length > MAX_MESSAGE_SIZE) {
        this.socket.destroy();
        return;
      }
      if (this.buffered.length < length) return;
      // `buffered` is replaced, never written into, so this view stays valid while it waits its turn.
      const message = this.buffered.subarray(0, length);
      this.buffered = this.buffered.subarray(length);
      this.serving = this.serving.then(() => this.serve(message));
    }
  }

  private async serve(message: Buffer): Promise<void> {
    if (this.socket.destroyed) return;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    try {
      await this.onMessage(message);
    } catch {
      // Unparseable framing (or a fault that closes): a real server drops the connection; the driver reports
      // a network error.
      this.socket.destroy();
    }
  }

  private async onMessage(message: Buffer): Promise<void> {
    const requestId = message.readInt32LE(4);
    const opCode = message.readInt32LE(12);
    const body = message.subarray(HEADER_SIZE);
    if (opCode === OP_MSG) {
      const { flags, command } = parseOpMsg(body);
      const reply = await this.run(command);
      if ((flags & MSG_MORE_TO_COME) === 0 && !this.socket.destroyed) this.socket.write(encodeOpMsg(requestId, reply));
    } else if (opCode === OP_QUERY) {
      const command = parseOpQuery(body);
      const name = commandName(command);
      // Drivers send only the first handshake this way; everything else must use OP_MSG.
      const reply = isHelloName(name)
        ? await this.run(command)
        : errorReply(new CommandError(352, 'UnsupportedOpQueryCommand', `Unsupported OP_QUERY command: ${name}`));
      if (!this.socket.destroyed) this.socket.write(encodeOpReply(requestId, reply));
    } else if (opCode === OP_COMPRESSED) {
      throw new Error('compression was not negotiated');
    } else {
      throw new Error(`unsupported opCode ${opCode}`);
    }
  }

  private async run(command: Document): Promise<Document> {
    const name = commandName(command);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    try {
      return { ...(await this.engine.run(name, command, this.connectionId)), ok: 1 };
    } catch (error) {
      if (error instanceof CloseConnection) throw error;
      return errorReply(error);
    }
  }
}

function readCString(buffer: Buffer, offset: number): [string, number] {
  const end = buffer.indexOf(0, offset);
  if (end < 0) throw new Error('unterminated cstring');
  return [buffer.toString('utf8', offset, end), end + 1];
}

function readDocument(buffer: Buffer, offset: number): [Document, number] {
  const length = buffer.readInt32LE(offset);
  if (length < 5 || offset + length > buffer.length) throw new Error('truncated BSON document');
  return [deserialize(buffer.subarray(offset, offset + length), DESERIALIZE_OPTIONS), offset + length];
}

/** OP_MSG: flagBits, then sections (kind 0: the command; kind 1: size, identifier, documents), then CRC. */
function parseOpMsg(body: Buffer): { flags: number; command: Document } {
  const flags = body.readUInt32LE(0);
  // The checksum is optional and only meaningful on lossy links; it is skipped, not verified.
  const end = flags & MSG_CHECKSUM_PRESENT ? body.length - 4 : body.length;
  let offset = 4;
  let command: Document | undefined;
  const sequences: Array<[string, Document[]]> = [];
  while (offset < end) {
    const kind = body.readUInt8(offset);
    offset += 1;
    if (kind === 0) {
      [command, offset] = readDocument(body, offset);
    } else if (kind === 1) {
      const sectionEnd = offset + body.readInt32LE(offset);
      let [identifier, cursor] = readCString(body, offset + 4);
      const documents: Document[] = [];
      while (cursor < sectionEnd) {
        let document: Document;
        [document, cursor] = readDocument(body, cursor);
        documents.push(document);
      }
      sequences.push([identifier, documents]);
      offset = sectionEnd;
    } else {
      throw new Error(`unknown OP_MSG section kind ${kind}`);
    }
  }
  if (command === undefined) throw new Error('OP_MSG without a body section');
  // The driver moves `documents` / `updates` / `deletes` out of the body into sequences; put them back.
  for (const [identifier, documents] of sequences) command[identifier] = documents;
  return { flags, command };
}

/** OP_QUERY: flags, fullCollectionName, numberToSkip, numberToReturn, query [, fieldSelector]. */
function parseOpQuery(body: Buffer): Document {
  const [, afterName] = readCString(body, 4);
  const [query] = readDocument(body, afterName + 8);
  // Read preferences wrap the command as { $query: {...}, $readPreference: ... }.
  const inner: unknown = query['$query'];
  return isPlainObject(inner) ? inner : query;
}

function header(length: number, responseTo: number, opCode: number): Buffer {
  const buffer = Buffer.alloc(HEADER_SIZE);
  buffer.writeInt32LE(length, 0);
  buffer.writeInt32LE(nextRequestId++ & 0x7fffffff, 4);
  buffer.writeInt32LE(responseTo, 8);
  buffer.writeInt32LE(opCode, 12);
  return buffer;
}

function encodeOpMsg(responseTo: number, reply: Document): Buffer {
  const body = serialize(reply, { ignoreUndefined: true });
  const prefix = Buffer.alloc(5); // flagBits 0, section kind 0
  return Buffer.concat([header(HEADER_SIZE + 5 + body.length, responseTo, OP_MSG), prefix, body]);
}

function encodeOpReply(responseTo: number, reply: Document): Buffer {
  const body = serialize(reply, { ignoreUndefined: true });
  const fields = Buffer.alloc(20); // responseFlags, cursorID (int64), startingFrom, numberReturned
  fields.writeInt32LE(1, 16);
  return Buffer.concat([header(HEADER_SIZE + 20 + body.length, responseTo, OP_REPLY), fields, body]);
}

function commandName(command: Document): string {
  const first = Object.keys(command)[0];
  return first ?? '';
}

function isHelloName(name: string): boolean {
  return name === 'hello' || name === 'isMaster' || name === 'ismaster';
}

// ---------------------------------------------------------------------------------------------------------
// Errors

/** A command failure that becomes `{ ok: 0, errmsg, code, codeName }` (plus extra fields) on the wire. */
class CommandError extends Error {
  constructor(
    readonly code: number,
    readonly codeName: string,
    message: string,
    readonly extra: Document = {},
  ) {
    super(message);
  }
}

/** Thrown by the engine when the connection must be closed without a reply (a fault mode). */
class CloseConnection extends Error {}

function errorReply(error: unknown): Document {
  if (error instanceof CommandError) {
    return { ok: 0, errmsg: error.message, code: error.code, codeName: error.codeName, ...error.extra };
  }
  // mingo reports bad operators and expressions by throwing; a real server answers those with BadValue-ish codes.
  const message = error instanceof Error ? error.message : String(error);
  return { ok: 0, errmsg: message, code: 2, codeName: 'BadValue' };
}

/** `bare`: the `bare-duplicate-key` fault, errors without key details. */
function duplicateKeyError(ns: string, index: Index, keyValue: Document, bare: boolean): CommandError {
  if (bare) return new CommandError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns}`);
  const shown = Object.entries(keyValue)
    .map(([field, value]) => `${field}: ${EJSON.stringify(value, { relaxed: true })}`)
    .join(', ');
  return new CommandError(
    11000,
    'DuplicateKey',
    `E11000 duplicate key error collection: ${ns} index: ${index.name} dup key: { ${shown} }`,
    { keyPattern: index.keyPattern, keyValue },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Storage engine

interface Stored {
  doc: Document;
  /** Insertion order: natural order for unsorted reads. */
  ord: number;
}

interface CursorState {
  ns: string;
  remaining: Document[];
}

/** Canonical string of a BSON value, used as a map key (type-aware: 1 and "1" differ). */
function keyOf(value: unknown): string {
  return EJSON.stringify([value === undefined ? null : value], { relaxed: false });
}

function isPlainObject(value: unknown): value is Document {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** True when the path meets an array anywhere: such documents match equality on any element (multikey). */
function pathHasArray(doc: Document, path: string): boolean {
  let current: unknown = doc;
  for (const part of path.split('.')) {
    if (Array.isArray(current)) return true;
    if (!isPlainObject(current)) return false;
    current = current[part];
  }
  return Array.isArray(current);
}

/** Deliberately not a type guard: its negation must not narrow a Document to `never`. */
function isOperatorObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).some((key) => key.startsWith('$'));
}

function getPath(doc: Document, path: string): unknown {
  let current: unknown = doc;
  for (const part of path.split('.')) {
    if (!isPlainObject(current)) return undefined;
    current = current[part];
  }
  return current;
}

function setPath(doc: Document, path: string, value: unknown): void {
  const parts = path.split('.');
  const last = parts.pop() ?? path;
  let current = doc;
  for (const part of parts) {
    const next: unknown = current[part];
    if (isPlainObject(next)) current = next;
    else current = current[part] = {};
  }
  current[last] = value;
}

/** Deep copy through BSON so stored documents never alias caller or reply objects and keep BSON types. */
function cloneDoc(doc: Document): Document {
  return deserialize(serialize(doc), DESERIALIZE_OPTIONS);
}

function sameDoc(a: Document, b: Document): boolean {
  return Buffer.from(serialize(a)).equals(serialize(b));
}

function asNumber(value: unknown, fallback: number): number {
  if (typeof value === 'number') return value;
  if (value instanceof Long) return value.toNumber();
  if (typeof value === 'bigint') return Number(value);
  return fallback;
}

function asDocument(value: unknown, what: string): Document {
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) throw new CommandError(14, 'TypeMismatch', `${what} must be an object`);
  return value;
}

function asDocuments(value: unknown, what: string): Document[] {
  if (!Array.isArray(value)) throw new CommandError(14, 'TypeMismatch', `${what} must be an array`);
  return value.map((item, i) => asDocument(item, `${what}.${i}`));
}

const ID_INDEX = '_id_';

/** First position in `list` (ascending by value) whose value is >= `value` (> `value` when `strict`). */
function lowerBound(list: ReadonlyArray<{ value: number }>, value: number, strict: boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = list[mid]!.value;
    if (v < value || (strict && v === value)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

class Index {
  readonly fields: string[];
  readonly unique: boolean;
  readonly sparse: boolean;
  readonly expireAfterSeconds: number | undefined;
  private readonly partial: Query | null;
  /** Unique indexes: key tuple → _id key. */
  private readonly entries = new Map<string, string>();
  /** Value of the first key field → _id keys, to narrow equality queries without a full scan. */
  private readonly buckets = new Map<string, Set<string>>();
  /** Documents whose first key field is an array: they can match equality queries on any element. */
  private readonly unbucketed = new Set<string>();
  /** Documents with an array in any key field: while there are any, exact-key lookups could miss matches. */
  private readonly withArrays = new Set<string>();
  /**
   * Compound indexes: per value of the first field, the documents ordered by a numeric second field, so a
   * query bound on the first field and ranged and sorted on the second reads only what it returns (as a
   * B-tree serves `{ to, seq: { $gt } }` sorted by seq). Turned off for good once a second field is not a number.
   */
  private ordered: Map<string, Array<{ value: number; id: string }>> | null;

  constructor(
    readonly name: string,
    readonly keyPattern: Document,
    readonly spec: Document,
  ) {
    this.fields = Object.keys(keyPattern);
    // The _id index is unique without saying so in its spec, as on a real server.
    this.unique = spec['unique'] === true || name === ID_INDEX;
    this.sparse = spec['sparse'] === true;
    this.expireAfterSeconds = typeof spec['expireAfterSeconds'] === 'number' ? spec['expireAfterSeconds'] : undefined;
    const partial: unknown = spec['partialFilterExpression'];
    this.partial = isPlainObject(partial) ? new Query(partial, {}) : null;
    this.ordered = this.fields.length >= 2 && this.partial === null && !this.sparse ? new Map() : null;
  }

  private orderedAdd(id: string, doc: Document): void {
    if (this.ordered === null) return;
    const value = getPath(doc, this.fields[1]!);
    if (typeof value !== 'number' || pathHasArray(doc, this.firstField)) {
      this.ordered = null;
      return;
    }
    const bucketKey = keyOf(getPath(doc, this.firstField));
    let list = this.ordered.get(bucketKey);
    if (list === undefined) this.ordered.set(bucketKey, (list = []));
    // After any equal values: ties keep insertion (natural) order.
    list.splice(lowerBound(list, value, true), 0, { value, id });
  }

  private orderedRemove(id: string, doc: Document): void {
    if (this.ordered === null) return;
    const value = getPath(doc, this.fields[1]!);
    const bucketKey = keyOf(getPath(doc, this.firstField));
    const list = this.ordered.get(bucketKey);
    if (list === undefined || typeof value !== 'number') return;
    for (let i = lowerBound(list, value, false); i < list.length && list[i]!.value === value; i++) {
      if (list[i]!.id === id) {
        list.splice(i, 1);
        break;
      }
    }
    if (list.length === 0) this.ordered.delete(bucketKey);
  }

  /**
   * _id keys of documents whose first field equals `first`, whose second field is within the bounds, in order
   * of the second field (`direction` -1: descending). Null when this index cannot answer that.
   */
  orderedRange(first: unknown, bounds: { gt?: number; gte?: number; lt?: number; lte?: number }, direction: 1 | -1): Iterable<string> | null {
    if (this.ordered === null || this.unbucketed.size > 0) return null;
    const list = this.ordered.get(keyOf(first)) ?? [];
    let start = 0;
    let end = list.length;
    if (bounds.gt !== undefined) start = Math.max(start, lowerBound(list, bounds.gt, true));
    if (bounds.gte !== undefined) start = Math.max(start, lowerBound(list, bounds.gte, false));
    if (bounds.lt !== undefined) end = Math.min(end, lowerBound(list, bounds.lt, false));
    if (bounds.lte !== undefined) end = Math.min(end, lowerBound(list, bounds.lte, true));
    return (function* () {
      if (direction === 1) for (let i = start; i < end; i++) yield list[i]!.id;
      else for (let i = end - 1; i >= start; i--) yield list[i]!.id;
    })();
  }


  get firstField(): string {
    return this.fields[0] ?? '_id';
  }

  /** The key tuple of a document, or null when this index does not cover it (sparse / partial). */
  private tuple(doc: Document): { key: string; value: Document } | null {
    if (this.partial !== null && !this.partial.test(doc)) return null;
    const value: Document = {};
    let present = false;
    for (const field of this.fields) {
      const v = getPath(doc, field);
      if (v !== undefined) present = true;
      value[field] = v === undefined ? null : v;
    }
    if (this.sparse && !present) return null;
    return { key: keyOf(this.fields.map((field) => value[field])), value };
  }

  /** Throws the duplicate-key error a unique index would raise for `doc` (ignoring the document `self`). */
  check(ns: string, doc: Document, self: string | null, bare: boolean): void {
    if (!this.unique) return;
    const t = this.tuple(doc);
    if (t === null) return;
    const owner = this.entries.get(t.key);
    if (owner !== undefined && owner !== self) throw duplicateKeyError(ns, this, t.value, bare);
  }

  add(id: string, doc: Document): void {
    this.orderedAdd(id, doc);
    const t = this.tuple(doc);
    if (t !== null && this.unique) this.entries.set(t.key, id);
    if (this.fields.some((field) => pathHasArray(doc, field))) this.withArrays.add(id);
    if (pathHasArray(doc, this.firstField)) {
      this.unbucketed.add(id);
      return;
    }
    const bucketKey = keyOf(getPath(doc, this.firstField));
    let bucket = this.buckets.get(bucketKey);
    if (bucket === undefined) this.buckets.set(bucketKey, (bucket = new Set()));
    bucket.add(id);
  }

  remove(id: string, doc: Document): void {
    this.orderedRemove(id, doc);
    const t = this.tuple(doc);
    if (t !== null && this.unique && this.entries.get(t.key) === id) this.entries.delete(t.key);
    this.unbucketed.delete(id);
    this.withArrays.delete(id);
    const bucketKey = keyOf(getPath(doc, this.firstField));
    const bucket = this.buckets.get(bucketKey);
    bucket?.delete(id);
    if (bucket?.size === 0) this.buckets.delete(bucketKey);
  }

  /**
   * For a unique index whose every field is bound to one value by `equalities`: the _id keys (zero or one)
   * of the document with that key. Null when the index cannot answer exactly.
   */
  lookup(equalities: ReadonlyMap<string, unknown[]>): string[] | null {
    if (!this.unique || this.sparse || this.partial !== null || this.withArrays.size > 0) return null;
    const key: unknown[] = [];
    for (const field of this.fields) {
      const values = equalities.get(field);
      if (values?.length !== 1) return null;
      key.push(values[0]);
    }
    const id = this.entries.get(keyOf(key));
    return id === undefined ? [] : [id];
  }

  /** _id keys of documents whose first key field may equal one of `values`. */
  candidates(values: unknown[]): Set<string> {
    const out = new Set<string>(this.unbucketed);
    for (const value of values) {
      for (const id of this.buckets.get(keyOf(value)) ?? []) out.add(id);
    }
    return out;
  }

  describe(): Document {
    return { v: 2, key: this.keyPattern, name: this.name, ...this.spec };
  }
}

class Collection {
  private readonly docs = new Map<string, Stored>();
  readonly indexes = new Map<string, Index>();
  private nextOrd = 0;

  constructor(
    readonly ns: string,
    private readonly bareDuplicateKeys: boolean,
  ) {
    this.indexes.set(ID_INDEX, new Index(ID_INDEX, { _id: 1 }, {}));
  }

  get size(): number {
    return this.docs.size;
  }

  all(): Document[] {
    return [...this.docs.values()].map((stored) => stored.doc);
  }

  /**
   * Documents that may match `filter`, in natural order. `exact` means a unique index answered the whole
   * filter (every condition an equality on one of its fields), so evaluating it again would change nothing.
   */
  candidates(filter: Document): { docs: Document[]; exact: boolean } {
    const equalities = new Map<string, unknown[]>();
    for (const [field, condition] of Object.entries(filter)) {
      if (field.startsWith('$')) continue;
      const operators: Document | null = isPlainObject(condition) && isOperatorObject(condition) ? condition : null;
      if (operators === null) {
        if (!(condition instanceof RegExp)) equalities.set(field, [condition]);
      } else if (Object.keys(operators).length === 1) {
        const $in: unknown = operators['$in'];
        if ('$eq' in operators) equalities.set(field, [operators['$eq']]);
        else if (Array.isArray($in) && !$in.some((v) => v instanceof RegExp)) equalities.set(field, $in);
      }
    }
    if (equalities.size === 0) return { docs: this.all(), exact: false };
    // A unique index bound on every field names at most one document: keeps dedupe lookups O(1).
    for (const index of this.indexes.values()) {
      const ids = index.lookup(equalities);
      if (ids === null) continue;
      const keys = Object.keys(filter);
      const exact = keys.length === index.fields.length && keys.every((key) => index.fields.includes(key));
      return { docs: this.byIds(ids), exact };
    }
    let best: Set<string> | null = null;
    for (const index of this.indexes.values()) {
      const values = equalities.get(index.firstField);
      if (values === undefined) continue;
      const ids = index.candidates(values);
      if (best === null || ids.size < best.size) best = ids;
    }
    return { docs: best === null ? this.all() : this.byIds(best), exact: false };
  }

  /**
   * The first `limit` matches of a query bound by equality on a compound index's first field and sorted by
   * its (numeric) second field, read in index order: the cost is what is returned, not the bucket's size.
   * Null when no index has that shape for this query.
   */
  orderedRead(filter: Document, sort: Document, limit: number): Document[] | null {
    const sortKeys = Object.keys(sort);
    if (limit <= 0 || sortKeys.length !== 1) return null;
    const sortField = sortKeys[0]!;
    const direction = sort[sortField] === -1 ? -1 : 1;
    for (const index of this.indexes.values()) {
      if (index.fields.length < 2 || index.fields[1] !== sortField) continue;
      const first = filter[index.firstField];
      if (first === undefined || isOperatorObject(first) || first instanceof RegExp) continue;
      const range: unknown = filter[sortField];
      const bounds: { gt?: number; gte?: number; lt?: number; lte?: number } = {};
      if (range !== undefined) {
        if (!isPlainObject(range) || !isOperatorObject(range)) continue;
        const ops = Object.entries(range);
        if (!ops.every(([op, v]) => ['$gt', '$gte', '$lt', '$lte'].includes(op) && typeof v === 'number')) continue;
        for (const [op, v] of ops) bounds[op.slice(1) as keyof typeof bounds] = v as number;
      }
      const ids = index.orderedRange(first, bounds, direction);
      if (ids === null) continue;
      const query = new Query(filter, {});
      const out: Document[] = [];
      for (const id of ids) {
        const stored = this.docs.get(id);
        if (stored !== undefined && query.test(stored.doc)) out.push(stored.doc);
        if (out.length >= limit) break;
      }
      return out;
    }
    return null;
  }

  private byIds(ids: Iterable<string>): Document[] {
    return [...ids]
      .map((id) => this.docs.get(id))
      .filter((stored): stored is Stored => stored !== undefined)
      .sort((a, b) => a.ord - b.ord)
      .map((stored) => stored.doc);
  }

  /** Matching documents, optionally sorted, in the order a server would visit them. */
  match(filter: Document, sort?: Document): Document[] {
    const { docs, exact } = this.candidates(filter);
    // Building a mingo Query is the stand-in's main cost; skip it when an index already decided.
    if (exact) return docs;
    const cursor = mingoFind(docs, filter);
    if (sort !== undefined && Object.keys(sort).length > 0) cursor.sort(sort);
    return cursor.all() as Document[];
  }

  insert(input: Document): Document {
    const doc = '_id' in input ? cloneDoc(input) : { _id: new ObjectId(), ...cloneDoc(input) };
    const id = keyOf(doc['_id']);
    for (const index of this.indexes.values()) index.check(this.ns, doc, null, this.bareDuplicateKeys);
    this.docs.set(id, { doc, ord: this.nextOrd++ });
    for (const index of this.indexes.values()) index.add(id, doc);
    return doc;
  }

  /** Replaces a stored document; false (nothing written) when it is no longer stored (a racy write). */
  replace(old: Document, next: Document): boolean {
    const id = keyOf(old['_id']);
    const stored = this.docs.get(id);
    if (stored === undefined) return false;
    for (const index of this.indexes.values()) index.check(this.ns, next, id, this.bareDuplicateKeys);
    for (const index of this.indexes.values()) index.remove(id, stored.doc);
    stored.doc = next;
    for (const index of this.indexes.values()) index.add(id, next);
    return true;
  }

  remove(doc: Document): void {
    const id = keyOf(doc['_id']);
    const stored = this.docs.get(id);
    if (stored === undefined) return;
    for (const index of this.indexes.values()) index.remove(id, stored.doc);
    this.docs.delete(id);
  }

  /** Adds an index over existing documents; fails without side effects on a duplicate. */
  addIndex(index: Index): void {
    const probe = new Index(index.name, index.keyPattern, index.spec);
    for (const [id, stored] of this.docs) {
      probe.check(this.ns, stored.doc, null, this.bareDuplicateKeys);
      probe.add(id, stored.doc);
    }
    this.indexes.set(index.name, probe);
  }
}

type Database = Map<string, Collection>;

/** All state and command semantics; one instance per stand-in, shared by all its connections. */
class Engine {
  private databases = new Map<string, Database>();
  private readonly cursors = new Map<string, CursorState>();
  private nextCursorId = 1_000_000;
  /** See MongoStandin.refuse. */
  refused: string | null = null;
  refusals = 0;
  /** See MongoStandin.loseReplyOnce. */
  loseReply: { command: string; collection: string } | null = null;

  constructor(
    private readonly faults: ReadonlySet<StandinFault>,
    private readonly onDatabaseCreated: (name: string) => void,
  ) {}

  private get racy(): boolean {
    return this.faults.has('racy-updates');
  }

  wipe(): void {
    this.databases = new Map();
    this.cursors.clear();
  }

  killAllCursors(): void {
    this.cursors.clear();
  }

  dump(db: string, collection: string): Document[] {
    return (this.databases.get(db)?.get(collection)?.all() ?? []).map(cloneDoc);
  }

  private collection(db: string, name: unknown, create: boolean): Collection | undefined {
    if (typeof name !== 'string' || name.length === 0) {
      throw new CommandError(73, 'InvalidNamespace', `Invalid collection name: ${String(name)}`);
    }
    let database = this.databases.get(db);
    if (database === undefined) {
      if (!create) return undefined;
      this.databases.set(db, (database = new Map()));
      this.onDatabaseCreated(db);
    }
    let collection = database.get(name);
    if (collection === undefined && create) database.set(name, (collection = new Collection(`${db}.${name}`, this.faults.has('bare-duplicate-key'))));
    return collection;
  }

  run(name: string, command: Document, connectionId: number): Document | Promise<Document> {
    const db = typeof command['$db'] === 'string' ? command['$db'] : 'admin';
    if (this.loseReply !== null && name === this.loseReply.command && command[name] === this.loseReply.collection) {
      this.loseReply = null;
      return Promise.resolve(this.run(name, command, connectionId)).then(() => {
        throw new CloseConnection(`${name} on ${String(command[name])}: reply lost by the test`);
      });
    }
    if (this.refused !== null && command[name] === this.refused) {
      this.refusals++;
      throw new CommandError(1, 'InternalError', `${this.refused}: refused by the test`);
    }
    switch (name) {
      case 'hello':
      case 'isMaster':
      case 'ismaster':
        return this.hello(name, command, connectionId);
      case 'ping':
      case 'endSessions':
      case 'killAllSessions':
        return {};
      case 'buildInfo':
      case 'buildinfo':
        return { version: '7.0.0-standin', versionArray: [7, 0, 0, 0], bits: 64, maxBsonObjectSize: MAX_BSON_OBJECT_SIZE };
      case 'insert':
        return this.insert(db, command);
      case 'update':
        return this.update(db, command);
      case 'delete':
        return this.delete(db, command);
      case 'find':
        return this.find(db, command);
      case 'getMore':
        return this.getMore(command);
      case 'killCursors':
        return this.killCursors(command);
      case 'findAndModify':
      case 'findandmodify':
        return this.findAndModify(db, command, name);
      case 'count':
        return this.count(db, command);
      case 'distinct':
        return this.distinct(db, command);
      case 'aggregate':
        return this.aggregate(db, command);
      case 'createIndexes':
        return this.createIndexes(db, command);
      case 'listIndexes':
        return this.listIndexes(db, command);
      case 'dropIndexes':
        return this.dropIndexes(db, command);
      case 'create':
        this.collection(db, command['create'], true);
        return {};
      case 'listCollections':
        return this.listCollections(db, command);
      case 'drop':
        return this.drop(db, command);
      case 'listDatabases':
        return {
          databases: [...this.databases.keys()].map((name) => ({ name, sizeOnDisk: 0, empty: false })),
          totalSize: 0,
        };
      case 'dropDatabase':
        this.databases.delete(db);
        return { dropped: db };
      default:
        throw new CommandError(59, 'CommandNotFound', `no such command: '${name}'`);
    }
  }

  private hello(name: string, command: Document, connectionId: number): Document {
    return {
      // `hello` answers isWritablePrimary; the legacy spellings answer ismaster.
      ...(name === 'hello' ? { isWritablePrimary: true } : { ismaster: true }),
      ...(command['helloOk'] === true ? { helloOk: true } : {}),
      maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
      maxMessageSizeBytes: MAX_MESSAGE_SIZE,
      maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
      localTime: new Date(),
      logicalSessionTimeoutMinutes: 30,
      connectionId,
      minWireVersion: 0,
      maxWireVersion: MAX_WIRE_VERSION,
      readOnly: false,
    };
  }

  // --- writes ---------------------------------------------------------------------------------------

  private insert(db: string, command: Document): Document {
    const collection = this.collection(db, command['insert'], true)!;
    const documents = asDocuments(command['documents'], 'documents');
    const ordered = command['ordered'] !== false;
    const writeErrors: Document[] = [];
    let n = 0;
    for (const [index, doc] of documents.entries()) {
      try {
        collection.insert(doc);
        n += 1;
      } catch (error) {
        writeErrors.push(writeError(index, error));
        if (ordered) break;
      }
    }
    return writeErrors.length > 0 ? { n, writeErrors } : { n };
  }

  private async update(db: string, command: Document): Promise<Document> {
    const collection = this.collection(db, command['update'], true)!;
    const updates = asDocuments(command['updates'], 'updates');
    const ordered = command['ordered'] !== false;
    const writeErrors: Document[] = [];
    const upserted: Document[] = [];
    let n = 0;
    let nModified = 0;
    for (const [index, statement] of updates.entries()) {
      try {
        const filter = asDocument(statement['q'], 'q');
        const modifier: unknown = statement['u'];
        const arrayFilters = Array.isArray(statement['arrayFilters']) ? (statement['arrayFilters'] as Document[]) : [];
        const sort = isPlainObject(statement['sort']) ? statement['sort'] : undefined;
        const matched = collection.match(filter, sort);
        const targets = statement['multi'] === true ? matched : matched.slice(0, 1);
        // racy-updates: read, let other connections run, then write what was computed from the read.
        if (this.racy) await yieldToOthers();
        for (const doc of targets) {
          const next = applyUpdate(doc, modifier, arrayFilters, false);
          n += 1;
          if (!sameDoc(doc, next) && collection.replace(doc, next)) nModified += 1;
        }
        if (targets.length === 0 && statement['upsert'] === true) {
          const doc = collection.insert(upsertDocument(filter, modifier, arrayFilters));
          upserted.push({ index, _id: doc['_id'] });
          n += 1;
        }
      } catch (error) {
        writeErrors.push(writeError(index, error));
        if (ordered) break;
      }
    }
    return {
      n,
      nModified,
      ...(upserted.length > 0 ? { upserted } : {}),
      ...(writeErrors.length > 0 ? { writeErrors } : {}),
    };
  }

  private delete(db: string, command: Document): Document {
    const collection = this.collection(db, command['delete'], false);
    const deletes = asDocuments(command['deletes'], 'deletes');
    let n = 0;
    if (collection === undefined) return { n };
    for (const statement of deletes) {
      const matched = collection.match(asDocument(statement['q'], 'q'));
      const targets = asNumber(statement['limit'], 0) === 1 ? matched.slice(0, 1) : matched;
      for (const doc of targets) collection.remove(doc);
      n += targets.length;
    }
    return { n };
  }

  private async findAndModify(db: string, command: Document, name: string): Promise<Document> {
    const collection = this.collection(db, command[name], true)!;
    const filter = asDocument(command['query'], 'query');
    const sort = isPlainObject(command['sort']) ? command['sort'] : undefined;
    const fields = isPlainObject(command['fields']) ? command['fields'] : undefined;
    const arrayFilters = Array.isArray(command['arrayFilters']) ? (command['arrayFilters'] as Document[]) : [];
    const returnNew = command['new'] === true;
    const project = (doc: Document | null): Document | null =>
      doc === null ? null : fields === undefined ? doc : ((mingoFind([doc], {}, fields).all()[0] as Document) ?? null);
    const [found] = collection.match(filter, sort);
    if (this.racy) await yieldToOthers();

    if (command['remove'] === true) {
      if (found === undefined) return { lastErrorObject: { n: 0 }, value: null };
      collection.remove(found);
      return { lastErrorObject: { n: 1 }, value: project(found) };
    }
    const modifier: unknown = command['update'];
    if (modifier === undefined) throw new CommandError(9, 'FailedToParse', 'Either an update or remove=true must be specified');
    if (found !== undefined) {
      const next = applyUpdate(found, modifier, arrayFilters, false);
      if (!sameDoc(found, next)) collection.replace(found, next);
      return { lastErrorObject: { n: 1, updatedExisting: true }, value: project(returnNew ? next : found) };
    }
    if (command['upsert'] !== true) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null };
    const inserted = collection.insert(upsertDocument(filter, modifier, arrayFilters));
    return {
      lastErrorObject: { n: 1, updatedExisting: false, upserted: inserted['_id'] },
      value: returnNew ? project(inserted) : null,
    };
  }

  // --- reads ----------------------------------------------------------------------------------------

  private find(db: string, command: Document): Document {
    const name = command['find'];
    const collection = this.collection(db, name, false);
    const filter = asDocument(command['filter'], 'filter');
    let docs: Document[] = [];
    const sort = isPlainObject(command['sort']) ? command['sort'] : undefined;
    const limit = Math.abs(asNumber(command['limit'], 0));
    const skip = asNumber(command['skip'], 0);
    const ordered = collection !== undefined && sort !== undefined && skip === 0 ? collection.orderedRead(filter, sort, limit) : null;
    if (ordered !== null) {
      docs = isPlainObject(command['projection']) ? (mingoFind(ordered, {}, command['projection']).all() as Document[]) : ordered;
    } else if (collection !== undefined) {
      const candidates = collection.candidates(filter);
      const cursor = mingoFind(
        candidates.docs,
        candidates.exact ? {} : filter,
        isPlainObject(command['projection']) ? command['projection'] : undefined,
      );
      if (sort !== undefined && Object.keys(sort).length > 0) cursor.sort(sort);
      if (skip > 0) cursor.skip(skip);
      if (limit > 0) cursor.limit(limit);
      docs = cursor.all() as Document[];
    }
    return this.openCursor(`${db}.${String(name)}`, docs, command['batchSize'], command['singleBatch'] === true);
  }

  private aggregate(db: string, command: Document): Document {
    const name = command['aggregate'];
    const pipeline = asDocuments(command['pipeline'], 'pipeline');
    for (const stage of pipeline) {
      const op = commandName(stage);
      if (op === '$out' || op === '$merge' || op === '$lookup' || op === '$unionWith' || op === '$graphLookup') {
        throw new CommandError(238, 'NotImplemented', `stand-in does not support ${op}`);
      }
    }
    const collection = typeof name === 'string' ? this.collection(db, name, false) : undefined;
    const firstMatch = pipeline[0]?.['$match'];
    const source = collection === undefined ? [] : collection.candidates(isPlainObject(firstMatch) ? firstMatch : {}).docs;
    const docs = mingoAggregate(source, pipeline) as Document[];
    const cursorOptions = asDocument(command['cursor'], 'cursor');
    return this.openCursor(`${db}.${String(name)}`, docs, cursorOptions['batchSize'], false);
  }

  private count(db: string, command: Document): Document {
    const collection = this.collection(db, command['count'], false);
    if (collection === undefined) return { n: 0 };
    let n = collection.match(asDocument(command['query'], 'query')).length;
    n = Math.max(0, n - asNumber(command['skip'], 0));
    const limit = Math.abs(asNumber(command['limit'], 0));
    return { n: limit > 0 ? Math.min(n, limit) : n };
  }

  private distinct(db: string, command: Document): Document {
    const collection = this.collection(db, command['distinct'], false);
    const key = command['key'];
    if (typeof key !== 'string') throw new CommandError(14, 'TypeMismatch', 'key must be a string');
    const values = new Map<string, unknown>();
    for (const doc of collection?.match(asDocument(command['query'], 'query')) ?? []) {
      const value = getPath(doc, key);
      for (const v of Array.isArray(value) ? value : [value]) if (v !== undefined) values.set(keyOf(v), v);
    }
    return { values: [...values.values()] };
  }

  private openCursor(ns: string, docs: Document[], batchSizeValue: unknown, singleBatch: boolean): Document {
    const batchSize = batchSizeValue === undefined ? DEFAULT_BATCH_SIZE : asNumber(batchSizeValue, DEFAULT_BATCH_SIZE);
    const firstBatch = docs.slice(0, batchSize);
    const remaining = docs.slice(firstBatch.length);
    let id = 0;
    if (!singleBatch && remaining.length > 0) {
      id = this.nextCursorId++;
      this.cursors.set(String(id), { ns, remaining });
    }
    // The driver insists on an int64 cursor id.
    return { cursor: { firstBatch, id: Long.fromNumber(id), ns } };
  }

  private getMore(command: Document): Document {
    const id = String(asNumber(command['getMore'], -1));
    const state = this.cursors.get(id);
    if (state === undefined) throw new CommandError(43, 'CursorNotFound', `cursor id ${id} not found`);
    const batchSize = asNumber(command['batchSize'], state.remaining.length);
    const nextBatch = state.remaining.splice(0, batchSize > 0 ? batchSize : state.remaining.length);
    const exhausted = state.remaining.length === 0;
    if (exhausted) this.cursors.delete(id);
    return { cursor: { nextBatch, id: Long.fromNumber(exhausted ? 0 : Number(id)), ns: state.ns } };
  }

  private killCursors(command: Document): Document {
    const ids = Array.isArray(command['cursors']) ? command['cursors'] : [];
    const cursorsKilled: Long[] = [];
    const cursorsNotFound: Long[] = [];
    for (const raw of ids) {
      const id = asNumber(raw, -1);
      (this.cursors.delete(String(id)) ? cursorsKilled : cursorsNotFound).push(Long.fromNumber(id));
    }
    return { cursorsKilled, cursorsNotFound, cursorsAlive: [], cursorsUnknown: [] };
  }

  // --- catalogue ------------------------------------------------------------------------------------

  private createIndexes(db: string, command: Document): Document {
    const specs = asDocuments(command['indexes'], 'indexes');
    const existed = this.collection(db, command['createIndexes'], false) !== undefined;
    const collection = this.collection(db, command['createIndexes'], true)!;
    const before = collection.indexes.size;
    if (
      this.faults.has('close-on-existing-indexes') &&
      specs.length > 1 &&
      specs.some((spec) => typeof spec['name'] === 'string' && collection.indexes.has(spec['name']))
    ) {
      throw new CloseConnection('createIndexes with several specs, some existing');
    }
    for (const spec of specs) {
      const key = spec['key'];
      const name = spec['name'];
      if (!isPlainObject(key) || Object.keys(key).length === 0) {
        throw new CommandError(67, 'CannotCreateIndex', 'Index keys must be a non-empty object');
      }
      if (typeof name !== 'string' || name.length === 0) {
        throw new CommandError(9, 'FailedToParse', 'The index name must be a non-empty string');
      }
      if (this.faults.has('no-ttl-indexes') && spec['expireAfterSeconds'] !== undefined) {
        // FerretDB 1.x refused the whole command like this; the adapter must fall back to sweeping.
        throw new CommandError(238, 'NotImplemented', 'Index option "expireAfterSeconds" is not implemented yet');
      }
      const options: Document = {};
      for (const [field, value] of Object.entries(spec)) {
        if (field !== 'key' && field !== 'name' && field !== 'v' && field !== 'background') options[field] = value;
      }
      const sameName = collection.indexes.get(name);
      const sameKey = [...collection.indexes.values()].find((index) => keyOf(index.keyPattern) === keyOf(key));
      if (sameName !== undefined) {
        if (keyOf(sameName.keyPattern) === keyOf(key) && keyOf(sameName.spec) === keyOf(options)) continue;
        throw new CommandError(
          85,
          'IndexOptionsConflict',
          `An existing index has the same name as the requested index. Requested index: ${EJSON.stringify(spec)}, existing index: ${EJSON.stringify(sameName.describe())}`,
        );
      }
      if (sameKey !== undefined) {
        throw new CommandError(
          85,
          'IndexOptionsConflict',
          `Index already exists with a different name: ${sameKey.name}`,
        );
      }
      collection.addIndex(new Index(name, key, options));
    }
    const after = collection.indexes.size;
    return {
      numIndexesBefore: before,
      numIndexesAfter: after,
      createdCollectionAutomatically: !existed,
      ...(before === after ? { note: 'all indexes already exist' } : {}),
    };
  }

  private listIndexes(db: string, command: Document): Document {
    const name = command['listIndexes'];
    const collection = this.collection(db, name, false);
    if (collection === undefined) throw new CommandError(26, 'NamespaceNotFound', `ns does not exist: ${db}.${String(name)}`);
    const docs = [...collection.indexes.values()].map((index) => index.describe());
    return this.openCursor(`${db}.${String(name)}`, docs, asDocument(command['cursor'], 'cursor')['batchSize'], false);
  }

  private dropIndexes(db: string, command: Document): Document {
    const collection = this.collection(db, command['dropIndexes'], false);
    if (collection === undefined) throw new CommandError(26, 'NamespaceNotFound', 'ns not found');
    const before = collection.indexes.size;
    const target = command['index'];
    for (const index of [...collection.indexes.values()]) {
      if (index.name === ID_INDEX) continue;
      if (target === '*' || target === index.name || (isPlainObject(target) && keyOf(target) === keyOf(index.keyPattern))) {
        collection.indexes.delete(index.name);
      }
    }
    return { nIndexesWas: before };
  }

  private listCollections(db: string, command: Document): Document {
    const database = this.databases.get(db) ?? new Map<string, Collection>();
    const all = [...database.keys()].map((name) => ({
      name,
      type: 'collection',
      options: {},
      info: { readOnly: false },
      idIndex: { v: 2, key: { _id: 1 }, name: ID_INDEX },
    }));
    const docs = mingoFind(all, asDocument(command['filter'], 'filter')).all() as Document[];
    return this.openCursor(`${db}.$cmd.listCollections`, docs, asDocument(command['cursor'], 'cursor')['batchSize'], false);
  }

  private drop(db: string, command: Document): Document {
    const name = command['drop'];
    const database = this.databases.get(db);
    const collection = this.collection(db, name, false);
    if (database === undefined || collection === undefined) {
      throw new CommandError(26, 'NamespaceNotFound', 'ns not found');
    }
    database.delete(String(name));
    return { ns: collection.ns, nIndexesWas: collection.indexes.size };
  }
}

/** Lets every other connection's pending command run (the yield of the `racy-updates` fault). */
function yieldToOthers(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function writeError(index: number, error: unknown): Document {
  if (error instanceof CommandError) {
    return { index, code: error.code, codeName: error.codeName, errmsg: error.message, ...error.extra };
  }
  return { index, code: 2, codeName: 'BadValue', errmsg: error instanceof Error ? error.message : String(error) };
}

/**
 * Applies an update (operator document, replacement document or pipeline) to a copy of `doc`.
 * `$setOnInsert` applies only when the document is being inserted by an upsert.
 */
function applyUpdate(doc: Document, modifier: unknown, arrayFilters: Document[], inserting: boolean): Document {
  const copy = cloneDoc(doc);
  let next: Document;
  if (Array.isArray(modifier)) {
    const holder = [copy];
    mingoUpdateOne(holder, {}, modifier as Parameters<typeof mingoUpdateOne>[2], { arrayFilters });
    next = holder[0] ?? copy;
  } else if (isPlainObject(modifier) && isOperatorObject(modifier)) {
    const operators: Document = {};
    for (const [op, value] of Object.entries(modifier)) {
      if (!op.startsWith('$')) {
        throw new CommandError(9, 'FailedToParse', `Unknown modifier: ${op}. Expected a valid update modifier`);
      }
      if (op === '$setOnInsert' || op === '$set') {
        if (op === '$set' || inserting) {
          operators['$set'] = { ...asDocument(operators['$set'], '$set'), ...asDocument(value, op) };
        }
      } else {
        operators[op] = value;
      }
    }
    if (Object.keys(operators).length > 0) mingoUpdateOne([copy], {}, operators, { arrayFilters });
    next = copy;
  } else if (isPlainObject(modifier)) {
    if ('_id' in modifier && keyOf(modifier['_id']) !== keyOf(doc['_id']) && '_id' in doc) {
      throw new CommandError(66, 'ImmutableField', "After applying the update, the (immutable) field '_id' was found to have been altered");
    }
    next = '_id' in doc ? { _id: doc['_id'], ...cloneDoc(modifier) } : cloneDoc(modifier);
  } else {
    throw new CommandError(9, 'FailedToParse', 'Update must be an object or a pipeline');
  }
  if ('_id' in doc && keyOf(next['_id']) !== keyOf(doc['_id'])) {
    throw new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");
  }
  // Keep _id first, as a server does.
  if ('_id' in next) {
    const { _id, ...rest } = next;
    next = { _id, ...rest };
  }
  return next;
}

/** The document an upsert inserts: equality fields of the filter, then the update applied with $setOnInsert. */
function upsertDocument(filter: Document, modifier: unknown, arrayFilters: Document[]): Document {
  const seed: Document = {};
  const equalities: Document = {};
  const collect = (query: Document): void => {
    for (const [field, condition] of Object.entries(query)) {
      if (field === '$and' && Array.isArray(condition)) {
        for (const part of condition) if (isPlainObject(part)) collect(part);
      } else if (!field.startsWith('$')) {
        if (!isOperatorObject(condition)) equalities[field] = condition;
        else if (isPlainObject(condition) && '$eq' in condition) equalities[field] = condition['$eq'];
      }
    }
  };
  collect(filter);
  // Not through mingo's $set: it refuses to write _id, which an upsert filter legitimately supplies.
  for (const [path, value] of Object.entries(equalities)) setPath(seed, path, value);
  const replacement: Document | null = isPlainObject(modifier) && !isOperatorObject(modifier) ? modifier : null;
  if (replacement !== null) {
    return '_id' in seed && !('_id' in replacement) ? { _id: seed['_id'], ...replacement } : { ...replacement };
  }
  return applyUpdate(seed, modifier, arrayFilters, true);
}

// ---------------------------------------------------------------------------------------------------------
// As a separate process

async function main(argv: string[]): Promise<void> {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at < 0 ? undefined : argv[at + 1];
  };
  const faults = (value('--faults') ?? '').split(',').filter((f) => f.length > 0) as StandinFault[];
  const standin = await startMongoStandin({
    port: Number(value('--port') ?? 0),
    faults,
    delayMs: Number(value('--delay-ms') ?? 0),
    onDatabaseCreated: (name) => process.stdout.write(JSON.stringify({ created: name }) + '\n'),
  });
  process.stdout.write(JSON.stringify({ uri: standin.uri, faults }) + '\n');
  const stop = (): void => void standin.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.slice(2));
}
