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
import { MongoClient } from 'mongodb';
import { startMongoStandin, type MongoStandin, type MongoStandinOptions } from './mongo-standin.ts';

export const PASSWORD = 'correct horse battery';

/** Config for tests: port 0, a temp data dir, cheap scrypt, quiet logs, registration unthrottled (tests make many accounts from one address). Overrides use env names. */
export function testConfig(dataDir: string, env: Record<string, string> = {}): Readonly<Config> {
  return loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, SCRYPT_COST: '10', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', REGISTRATIONS_PER_MINUTE: '1000000', CLIENT_DIR: join(dataDir, 'no-client'), ...env }, []);
}

/**
 * The store adapters server-level tests run against. `mongodb` means the in-memory wire-protocol stand-in
 * (test/support/mongo-standin.ts, not MongoDB), or a real MongoDB when MONGODB_URI is set in the environment.
 */
export const STORE_KINDS = ['embedded', 'mongodb'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

let dbCounter = 0;

/** A database name no other test (nor an earlier run on the same server) uses. */
export function freshDbName(): string {
  return `parley_test_${process.pid}_${++dbCounter}_${Math.random().toString(36).slice(2, 8)}`;
}

export interface HarnessOptions {
  /**
   * For a `mongodb` harness on the stand-in: its options (fault modes, `delayMs` to make the store many times
   * slower). Setting this makes the harness use its own stand-in even when MONGODB_URI is set.
   */
  standin?: MongoStandinOptions;
}

export class Harness {
  readonly dirs: string[] = [];
  private standin: MongoStandin | undefined;
  /** Every database this harness handed out, with the server it lives on: dropped by cleanup(). */
  private readonly databases: Array<{ uri: string; dbName: string }> = [];

  constructor(
    readonly storeKind: StoreKind = 'embedded',
    private readonly options: HarnessOptions = {},
  ) {}

  /**
   * Env that points a server at this harness's store: nothing for embedded, a fresh database for MongoDB
   * (MONGODB_URI when set, else a stand-in). Call it once and pass the result to every server that must share
   * one database.
   */
  async storeEnv(): Promise<Record<string, string>> {
    if (this.storeKind === 'embedded') return {};
    const dbName = freshDbName();
    const uri = process.env.MONGODB_URI && !this.options.standin ? process.env.MONGODB_URI : (await this.ownStandin()).uri;
    this.databases.push({ uri, dbName });
    return { MONGODB_URI: uri, MONGODB_DB: dbName };
  }

  private async ownStandin(): Promise<MongoStandin> {
    this.standin ??= await startMongoStandin(this.options.standin);
    return this.standin;
  }

  /** The stand-in behind a `mongodb` harness (to stop and restart it in outage tests). */
  async mongo(): Promise<MongoStandin> {
    if (process.env.MONGODB_URI && !this.options.standin) throw new Error('outage tests need the stand-in (unset MONGODB_URI)');
    return this.ownStandin();
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
    await this.dropDatabases();
    await this.standin?.close();
    this.standin = undefined;
  }

  /** Drops every database handed out, so a run against a real server leaves nothing behind. */
  private async dropDatabases(): Promise<void> {
    const byUri = new Map<string, string[]>();
    for (const { uri, dbName } of this.databases.splice(0)) byUri.set(uri, [...(byUri.get(uri) ?? []), dbName]);
    for (const [uri, names] of byUri) {
      // A stand-in stopped by an outage test is started again first: its data must not outlive the test either.
      if (this.standin && uri === this.standin.uri && !this.standin.running) await this.standin.start();
      const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
      try {
        await client.connect();
        for (const name of names) await client.db(name).dropDatabase();
      } finally {
        await client.close();
      }
    }
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
