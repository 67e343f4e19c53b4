/**
 * The only reader of process.env and argv. Every setting has an environment variable and an equivalent flag
 * (`PORT=9000` or `--port 9000`; flags win), a default that makes `npm start` work on localhost with no setup,
 * and a check that fails start-up with a clear message on nonsense. README.md's configuration table lists the
 * same settings; `SETTINGS` below is the source of both.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { LogLevel } from './core/logger.ts';

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  mongodbUri: string | undefined;
  mongodbDb: string | undefined;
  tls: { cert: string; key: string } | undefined;
  /** Origins allowed to open WebSockets and call the API besides the server's own. */
  allowedOrigins: string[];
  /** The origin browsers see when it differs from what the Host header says (behind a TLS proxy). */
  publicOrigin: string | undefined;
  logLevel: LogLevel;
  clientDir: string;
  sessionTtlMs: number;
  queueCap: number;
  roomHistory: number;
  roomMembers: number;
  retentionMs: number;
  idleTimeoutMs: number;
  frameRate: number;
  frameBurst: number;
  maxFileBytes: number;
  maxChunkBytes: number;
  maxStreamsPerUser: number;
  streamWindowBytes: number;
  streamMemoryBytes: number;
  streamResumeMs: number;
  scryptCost: number;
  registrationsPerMinute: number;
  shutdownTimeoutMs: number;
  /**
   * NATS server URL(s), comma-separated, when this process is one node of several; undefined for one node with no
   * bus (the in-process router).
   */
  natsUrl: string | undefined;
  /** The direct link to other nodes (`NODE_LINK`, `NODE_LINK_ANNOUNCE`); undefined when `off`. */
  nodeLink: { listen: { host: string; port: number }; announce?: { host: string; port: number } } | undefined;
  /** This node's id in logs, health and bus subjects: `NODE_ID`, else random per start. */
  nodeId: string;
  /** Peer addresses whose `X-Forwarded-For` is believed for per-address limits (`TRUSTED_PROXY`). */
  trustedProxies: string[];
}

type Kind = 'string' | 'int' | 'path' | 'list' | 'level';
interface Setting { env: string; kind: Kind; def: string | undefined; min?: number; max?: number; doc: string }

/** Every setting: environment name, type, default, bounds, and the line README.md shows for it. */
export const SETTINGS = {
  host: { env: 'HOST', kind: 'string', def: '127.0.0.1', doc: 'Address to listen on. Use 0.0.0.0 to accept connections from other machines.' },
  port: { env: 'PORT', kind: 'int', def: '8080', min: 0, max: 65535, doc: 'TCP port (0 picks a free one and logs it).' },
  dataDir: { env: 'DATA_DIR', kind: 'path', def: './data', doc: 'Directory of the embedded store (used when MONGODB_URI is not set).' },
  mongodbUri: { env: 'MONGODB_URI', kind: 'string', def: undefined, doc: 'MongoDB connection string; when set, accounts, sessions and the queue live in MongoDB.' },
  mongodbDb: { env: 'MONGODB_DB', kind: 'string', def: undefined, doc: 'Database name; defaults to the one in the URI, else `parley`.' },
  tlsCert: { env: 'TLS_CERT', kind: 'path', def: undefined, doc: 'PEM certificate file; with TLS_KEY, serves HTTPS and WSS.' },
  tlsKey: { env: 'TLS_KEY', kind: 'path', def: undefined, doc: 'PEM private key file for TLS_CERT.' },
  allowedOrigins: { env: 'ALLOWED_ORIGINS', kind: 'list', def: '', doc: 'Comma-separated extra origins allowed to connect (the server\'s own origin always is).' },
  publicOrigin: { env: 'PUBLIC_ORIGIN', kind: 'string', def: undefined, doc: 'Origin browsers use, e.g. `https://chat.example.org`. Unset, only the listening address (`http://HOST:PORT`, and localhost) is accepted; the `Host` header is never trusted.' },
  logLevel: { env: 'LOG_LEVEL', kind: 'level', def: 'info', doc: 'debug, info, warn, error or silent. Logs are JSON lines on stdout.' },
  clientDir: { env: 'CLIENT_DIR', kind: 'path', def: './client/dist', doc: 'Built browser client to serve (made by `npm run build`).' },
  sessionTtlHours: { env: 'SESSION_TTL_HOURS', kind: 'int', def: '720', min: 1, max: 24 * 365, doc: 'How long a sign-in stays valid.' },
  queueCap: { env: 'QUEUE_CAP', kind: 'int', def: '10000', min: 1, max: 10_000_000, doc: 'Messages one offline recipient\'s queue may hold; senders get QUEUE_FULL beyond.' },
  roomHistory: { env: 'ROOM_HISTORY', kind: 'int', def: '200', min: 0, max: 100_000, doc: 'Recent messages of a room a newcomer gets on joining (within retention).' },
  roomMembers: { env: 'ROOM_MEMBERS', kind: 'int', def: '1000', min: 2, max: 1_000_000, doc: 'Members one room may have; joins and invitations get ROOM_FULL beyond.' },
  retentionDays: { env: 'RETENTION_DAYS', kind: 'int', def: '30', min: 1, max: 3650, doc: 'Queued messages older than this are discarded.' },
  idleTimeoutSec: { env: 'IDLE_TIMEOUT_SEC', kind: 'int', def: '90', min: 2, max: 86_400, doc: 'A connection that sends nothing (not even a ping) for this long is closed.' },
  frameRate: { env: 'FRAME_RATE', kind: 'int', def: '1000', min: 1, max: 10_000_000, doc: 'Control frames per second one connection may send (sustained).' },
  frameBurst: { env: 'FRAME_BURST', kind: 'int', def: '2000', min: 1, max: 10_000_000, doc: 'Control frames one connection may send in a burst.' },
  maxFileMb: { env: 'MAX_FILE_MB', kind: 'int', def: '4096', min: 1, max: 1_048_576, doc: 'Largest file a stream may declare, in MiB.' },
  maxChunkKb: { env: 'MAX_CHUNK_KB', kind: 'int', def: '256', min: 1, max: 16_384, doc: 'Largest media chunk, in KiB.' },
  maxStreamsPerUser: { env: 'MAX_STREAMS_PER_USER', kind: 'int', def: '4', min: 1, max: 1000, doc: 'Concurrent streams one user may send or receive.' },
  streamWindowKb: { env: 'STREAM_WINDOW_KB', kind: 'int', def: '4096', min: 64, max: 1_048_576, doc: 'Credit window per stream: the most bytes the server holds for one stream.' },
  streamResumeSec: { env: 'STREAM_RESUME_SEC', kind: 'int', def: '600', min: 1, max: 7 * 86_400, doc: 'How long a transfer cut by a disconnect or takeover stays resumable from the bytes the recipient has (the server keeps who and what, never file bytes).' },
  streamMemoryMb: { env: 'STREAM_MEMORY_MB', kind: 'int', def: '256', min: 1, max: 1_048_576, doc: 'What all streams together may hold in the server: each accepted stream reserves one window; beyond, accepting gets STREAM_CAPACITY.' },
  scryptCost: { env: 'SCRYPT_COST', kind: 'int', def: '17', min: 10, max: 20, doc: 'log2 of scrypt\'s N for password hashes (17 = 128 MiB per hash). Lower only for tests.' },
  registrationsPerMinute: { env: 'REGISTRATIONS_PER_MINUTE', kind: 'int', def: '5', min: 1, max: 1_000_000, doc: 'Accounts one address may register per minute (bursts of the same size).' },
  shutdownTimeoutMs: { env: 'SHUTDOWN_TIMEOUT_MS', kind: 'int', def: '10000', min: 100, max: 600_000, doc: 'Longest a graceful shutdown may take before the process exits anyway.' },
  natsUrl: { env: 'NATS_URL', kind: 'string', def: undefined, doc: 'NATS server(s) joining this process to the other nodes of a deployment, e.g. `nats://10.0.0.5:4222` (comma-separated for several; JetStream must be on). Unset: one node, no bus.' },
  trustedProxy: { env: 'TRUSTED_PROXY', kind: 'list', def: '', doc: 'Comma-separated IP addresses of reverse proxies (nginx in front of the nodes) whose `X-Forwarded-For` gives the client address for sign-in and registration limits. Unset: the socket\'s own address is used, and the header is ignored.' },
  nodeLink: { env: 'NODE_LINK', kind: 'string', def: '127.0.0.1:0', doc: 'With NATS_URL: `host:port` this node listens on for direct links from the other nodes, which carry what nodes send each other (texts and their settles, stream control and chunks) instead of the bus (port 0: any free one); `off`: all of it crosses over the bus. A link announced on a loopback address is used only by nodes on the same machine (the same host name), so set an address the other nodes can reach when they run elsewhere.' },
  nodeLinkAnnounce: { env: 'NODE_LINK_ANNOUNCE', kind: 'string', def: undefined, doc: 'The `host:port` other nodes dial for this node\'s link, when not NODE_LINK\'s (listening on `0.0.0.0`, a NAT, a proxy). Default: NODE_LINK\'s host and the port it got.' },
  nodeId: { env: 'NODE_ID', kind: 'string', def: undefined, doc: 'This node\'s id in logs, `/healthz` and bus subjects: 1 to 32 of `A-Z a-z 0-9 _ -`, unique per node. Default: random at each start.' },
} as const satisfies Record<string, Setting>;

type Key = keyof typeof SETTINGS;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function flagName(env: string): string {
  return '--' + env.toLowerCase().replace(/_/g, '-');
}

/** Reads flags of the form `--port 9000` or `--port=9000`; unknown flags are an error. */
function parseArgs(argv: readonly string[]): Map<string, string> {
  const byFlag = new Map<string, string>(Object.values(SETTINGS).map((s) => [flagName(s.env), s.env]));
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const env = byFlag.get(flag);
    if (!env) throw new ConfigError(`unknown option ${flag}; known: ${[...byFlag.keys()].join(', ')}`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new ConfigError(`${flag} needs a value`);
    out.set(env, value);
  }
  return out;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv.slice(2)): Readonly<Config> {
  const flags = parseArgs(argv);
  const raw = (k: Key): string | undefined => {
    const s = SETTINGS[k];
    const v = flags.get(s.env) ?? env[s.env];
    return v === undefined || v === '' ? s.def : v;
  };
  const int = (k: Key): number => {
    const s: Setting = SETTINGS[k];
    const v = raw(k)!;
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || (s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
      throw new ConfigError(`${s.env} must be a whole number from ${s.min} to ${s.max}, got ${JSON.stringify(v)}`);
    }
    return n;
  };
  const path = (k: Key): string | undefined => {
    const v = raw(k);
    return v === undefined ? undefined : resolve(v);
  };

  const logLevel = raw('logLevel') as LogLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn, error or silent, got ${JSON.stringify(logLevel)}`);
  }
  const cert = path('tlsCert');
  const key = path('tlsKey');
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError('TLS_CERT and TLS_KEY must be set together');
  for (const [name, file] of [['TLS_CERT', cert], ['TLS_KEY', key]] as const) {
    if (file !== undefined && !existsSync(file)) throw new ConfigError(`${name} file not found: ${file} (make one with \`npm run cert\`)`);
  }
  const mongodbUri = raw('mongodbUri');
  if (mongodbUri !== undefined && !/^mongodb(\+srv)?:\/\/\S+$/.test(mongodbUri)) {
    throw new ConfigError('MONGODB_URI must start with mongodb:// or mongodb+srv://');
  }
  const origins = (raw('allowedOrigins') ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  const publicOrigin = raw('publicOrigin');
  for (const o of [...origins, ...(publicOrigin ? [publicOrigin] : [])]) {
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o.replace(/\/$/, '');
    } catch { /* reported below */ }
    if (!ok) throw new ConfigError(`not an origin (scheme://host[:port]): ${JSON.stringify(o)}`);
  }
  const natsUrl = raw('natsUrl');
  if (natsUrl !== undefined) {
    for (const u of natsUrl.split(',')) {
      if (!/^(nats|tls):\/\/[^\s/,]+(:\d{1,5})?\/?$/.test(u.trim())) {
        throw new ConfigError(`NATS_URL must be one or more nats://host:port (or tls://) URLs, comma-separated; got ${JSON.stringify(u.trim())}`);
      }
    }
  }
  const nodeLink = parseNodeLink(raw('nodeLink')!, raw('nodeLinkAnnounce'));
  const nodeId = raw('nodeId') ?? randomBytes(6).toString('base64url');
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(nodeId)) {
    throw new ConfigError(`NODE_ID must be 1 to 32 of A-Z a-z 0-9 _ -, got ${JSON.stringify(nodeId)}`);
  }
  const trustedProxies = (raw('trustedProxy') ?? '').split(',').map((a) => a.trim().toLowerCase()).filter(Boolean);
  for (const a of trustedProxies) {
    if (isIP(a) === 0) throw new ConfigError(`TRUSTED_PROXY must be IP addresses, comma-separated; got ${JSON.stringify(a)}`);
  }
  const frameRate = int('frameRate');
  const frameBurst = int('frameBurst');
  if (frameBurst < frameRate / 10) throw new ConfigError('FRAME_BURST must be at least a tenth of FRAME_RATE');

  return Object.freeze({
    host: raw('host')!,
    port: int('port'),
    dataDir: path('dataDir')!,
    mongodbUri,
    mongodbDb: raw('mongodbDb'),
    tls: cert && key ? { cert, key } : undefined,
    allowedOrigins: origins.map((o) => o.replace(/\/$/, '')),
    publicOrigin: publicOrigin?.replace(/\/$/, ''),
    logLevel,
    clientDir: path('clientDir')!,
    sessionTtlMs: int('sessionTtlHours') * 3_600_000,
    queueCap: int('queueCap'),
    roomHistory: int('roomHistory'),
    roomMembers: int('roomMembers'),
    retentionMs: int('retentionDays') * 86_400_000,
    idleTimeoutMs: int('idleTimeoutSec') * 1000,
    frameRate,
    frameBurst,
    maxFileBytes: int('maxFileMb') * 1024 * 1024,
    maxChunkBytes: int('maxChunkKb') * 1024,
    maxStreamsPerUser: int('maxStreamsPerUser'),
    streamWindowBytes: int('streamWindowKb') * 1024,
    streamMemoryBytes: int('streamMemoryMb') * 1024 * 1024,
    streamResumeMs: int('streamResumeSec') * 1000,
    scryptCost: int('scryptCost'),
    registrationsPerMinute: int('registrationsPerMinute'),
    shutdownTimeoutMs: int('shutdownTimeoutMs'),
    natsUrl: natsUrl?.split(',').map((u) => u.trim()).join(','),
    nodeLink,
    nodeId,
    trustedProxies,
  });
}

function parseNodeLink(listenText: string, announceText: string | undefined): Config['nodeLink'] {
  if (listenText.trim() === 'off') {
    if (announceText !== undefined) throw new ConfigError('NODE_LINK_ANNOUNCE needs a NODE_LINK (it is off)');
    return undefined;
  }
  const listen = parseHostPort(listenText);
  if (!listen) throw new ConfigError(`NODE_LINK must be host:port (or [v6]:port, or off); got ${JSON.stringify(listenText)}`);
  if (announceText === undefined) {
    if (listen.host === '0.0.0.0' || listen.host === '::') {
      throw new ConfigError('NODE_LINK on all interfaces needs NODE_LINK_ANNOUNCE: the address the other nodes dial');
    }
    return { listen };
  }
  const announce = parseHostPort(announceText);
  if (!announce || announce.port === 0 || announce.host === '0.0.0.0' || announce.host === '::') {
    throw new ConfigError(`NODE_LINK_ANNOUNCE must be a reachable host:port (not port 0, not 0.0.0.0); got ${JSON.stringify(announceText)}`);
  }
  return { listen, announce };
}

/** Parses `host:port` (`[v6]:port`) as NODE_LINK and NODE_LINK_ANNOUNCE take it; null when malformed. */
function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(s.trim());
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (m[1]!.startsWith('[') && isIP(host) !== 6) return null;
  return { host, port };
}
