/**
 * Integration test harness: a real Parley server on 127.0.0.1 port 0 (in this process, or as a child process
 * when a test must kill it), and real clients over real sockets. Tests tear everything down in afterEach via
 * `Harness.cleanup()`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ParleyClient, type ClientOptions, type WebSocketLike } from '../../client/sdk/client.ts';
import { register, signIn } from '../../client/sdk/http.ts';
import { startServer, type RunningServer } from '../../server/app.ts';
import { loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/core/logger.ts';
import type { Store } from '../../server/core/store.ts';
import { startMongoStandin, type MongoStandin } from './mongo-standin.ts';

export const PASSWORD = 'correct horse battery';

/** Config for tests: port 0, a temp data dir, cheap scrypt, quiet logs. Overrides use env names. */
export function testConfig(dataDir: string, env: Record<string, string> = {}): Readonly<Config> {
  return loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, SCRYPT_COST: '10', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', CLIENT_DIR: join(dataDir, 'no-client'), ...env }, []);
}

/**
 * The store adapters server-level tests run against. `mongodb` means the in-memory wire-protocol stand-in
 * (test/support/mongo-standin.ts, not MongoDB), or a real MongoDB when MONGODB_URI is set in the environment.
 */
export const STORE_KINDS = ['embedded', 'mongodb'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

let dbCounter = 0;

export class Harness {
  readonly dirs: string[] = [];
  private standin: MongoStandin | undefined;

  constructor(readonly storeKind: StoreKind = 'embedded') {}

  /** Env that points a server at this harness's store: nothing for embedded, a fresh database for MongoDB. */
  async storeEnv(dbName = `parley_test_${process.pid}_${++dbCounter}`): Promise<Record<string, string>> {
    if (this.storeKind === 'embedded') return {};
    if (process.env.MONGODB_URI) return { MONGODB_URI: process.env.MONGODB_URI, MONGODB_DB: dbName };
    this.standin ??= await startMongoStandin();
    return { MONGODB_URI: this.standin.uri, MONGODB_DB: dbName };
  }

  /** The stand-in behind a `mongodb` harness (to stop and restart it in outage tests). */
  async mongo(): Promise<MongoStandin> {
    await this.storeEnv();
    if (!this.standin) throw new Error('outage tests need the stand-in (unset MONGODB_URI)');
    return this.standin;
  }
  readonly servers: RunningServer[] = [];
  readonly clients: ParleyClient[] = [];
  readonly sockets: WebSocket[] = [];

  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'parley-test-'));
    this.dirs.push(dir);
    return dir;
  }

  async server(env: Record<string, string> = {}, store?: Store): Promise<RunningServer> {
    const dir = env.DATA_DIR ?? this.tempDir();
    const config = testConfig(dir, { ...(env.MONGODB_URI || store ? {} : await this.storeEnv()), ...env });
    const s = await startServer(config, { log: createLogger(config.logLevel), ...(store ? { store } : {}) });
    this.servers.push(s);
    return s;
  }

  /** Registers (if needed) and signs in; returns the bearer token. */
  async account(server: { url: string }, name: string, password = PASSWORD, opts: { register?: boolean } = {}): Promise<string> {
    const http = { baseUrl: server.url, fetch: insecureFetch(server.url) };
    if (opts.register !== false) await register(http, name, password).catch((e: { code?: string }) => {
      if (e.code !== 'NAME_TAKEN') throw e;
    });
    return (await signIn(http, name, password)).token;
  }

  /** A connected SDK client for `token`. */
  client(server: { url: string }, token: string, extra: Partial<ClientOptions> = {}): ParleyClient {
    const c = new ParleyClient({
      url: wsUrl(server.url),
      connect: (url) => this.rawSocket(url, token) as unknown as WebSocketLike,
      backoffBaseMs: 50,
      backoffMaxMs: 500,
      ...extra,
    });
    this.clients.push(c);
    return c;
  }

  /** A plain `ws` socket with the bearer token (and optional extra headers), for wire-level tests. */
  rawSocket(url: string, token: string | undefined, headers: Record<string, string> = {}): WebSocket {
    const ws = new WebSocket(url, {
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...headers },
      rejectUnauthorized: false,
    });
    ws.on('error', () => undefined); // the tests observe failures through close codes and events
    this.sockets.push(ws);
    return ws;
  }

  async cleanup(): Promise<void> {
    for (const c of this.clients.splice(0)) c.close();
    for (const ws of this.sockets.splice(0)) ws.terminate();
    await Promise.all(this.servers.splice(0).map((s) => s.stop().catch(() => undefined)));
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    await this.standin?.close();
    this.standin = undefined;
  }
}

export function wsUrl(httpUrl: string): string {
  return httpUrl.replace(/^http/, 'ws') + '/ws';
}

/** fetch that accepts the self-signed test certificate for https URLs (plain fetch for http). */
export function insecureFetch(url: string): typeof fetch {
  if (!url.startsWith('https:')) return fetch;
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const { request } = await import('node:https');
    const u = new URL(String(input));
    return new Promise<Response>((resolve, reject) => {
      const req = request(u, { method: init?.method ?? 'GET', headers: init?.headers as Record<string, string>, rejectUnauthorized: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: res.headers as Record<string, string> })));
      });
      req.on('error', reject);
      if (init?.body) req.write(init.body as string);
      req.end();
    });
  }) as typeof fetch;
}

/** Resolves when `cond()` holds, checking on each event-loop turn; fails with `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Collects events of one type from a client. */
export function collect<T>(on: (fn: (e: T) => void) => unknown): T[] {
  const out: T[] = [];
  on((e) => out.push(e));
  return out;
}
