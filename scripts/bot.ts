/**
 * An example Parley bot: an account driven by the SDK (client/sdk/) from Node, answering one-to-one messages
 * (`/help`, `/time`, `/ping`, anything else echoed; see scripts/bot/replies.ts).
 *
 *   npx tsx scripts/bot.ts --url http://127.0.0.1:8080 --name echobot --password '...' [--register]
 *
 * The password may come from PARLEY_BOT_PASSWORD instead of `--password` (other users of the machine can read a
 * command line). `--register` creates the account when it does not exist yet. `--retry-max-ms` caps the pause
 * between attempts to reach the server (30000 by default).
 *
 * It stays up on its own: the SDK reconnects with full-jitter backoff when the server goes away, and messages
 * sent meanwhile wait in the bot's queue on the server; an expired or ended session is signed in again. It
 * acknowledges a message only once the server has its answer, and answers it under an id made from the
 * question, so a bot stopped at any moment neither loses a question nor sends an answer twice. If someone else
 * signs in with the bot's name it stops (exit 1) instead of taking the session back. SIGINT or SIGTERM close
 * the connection and exit 0. Log lines are JSON on stdout, without message texts, passwords or tokens.
 *
 * Node 20 has no global WebSocket: the SDK is given one from the `ws` package.
 */
import WebSocket from 'ws';
import { ParleyClient, type ClosedReason, type IncomingMessage, type WebSocketLike } from '../client/sdk/client.ts';
import { ParleyHttpError, register, sessionValid, signIn, type HttpOptions } from '../client/sdk/http.ts';
import { Limits } from '../shared/protocol.ts';
import { answer, answerId } from './bot/replies.ts';

interface BotOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  name: string;
  password: string;
  register: boolean;
  retryMaxMs: number;
}

function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields }) + '\n');
}

function parseArgs(argv: string[]): BotOptions {
  const flags = new Map<string, string>();
  const bare = new Set(['register']);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(argv[i])}`);
    if (m[2] !== undefined) flags.set(m[1]!, m[2]);
    else if (bare.has(m[1]!)) flags.set(m[1]!, 'true');
    else if (i + 1 < argv.length) flags.set(m[1]!, argv[++i]!);
    else throw new Error(`--${m[1]} needs a value`);
  }
  for (const k of flags.keys()) if (!['url', 'name', 'password', 'register', 'retry-max-ms'].includes(k)) throw new Error(`unknown option --${k}`);
  const url = flags.get('url') ?? 'http://127.0.0.1:8080';
  if (!/^https?:\/\//.test(url)) throw new Error('--url must be the server\'s http:// or https:// address, e.g. http://127.0.0.1:8080');
  const name = flags.get('name');
  if (!name) throw new Error('--name is required: the bot\'s account name');
  const password = flags.get('password') ?? process.env.PARLEY_BOT_PASSWORD;
  if (!password) throw new Error('a password is required: --password or PARLEY_BOT_PASSWORD');
  const retryMaxMs = Number(flags.get('retry-max-ms') ?? 30_000);
  if (!Number.isInteger(retryMaxMs) || retryMaxMs < 100) throw new Error('--retry-max-ms must be an integer of at least 100');
  return { url: url.replace(/\/+$/, ''), name, password, register: flags.has('register'), retryMaxMs };
}

/** Set by SIGINT/SIGTERM: whatever the bot is waiting for ends, and it exits 0. */
const stop = new AbortController();

/** Waits `ms` (or until stopped). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      stop.signal.removeEventListener('abort', done);
      resolve();
    }
    stop.signal.addEventListener('abort', done);
  });
}

/** Signs in (registering first if asked and needed), retrying while the server cannot be reached. */
async function token(o: BotOptions, http: HttpOptions): Promise<string | null> {
  for (let attempt = 0; !stop.signal.aborted; attempt++) {
    try {
      return (await signIn(http, o.name, o.password)).token;
    } catch (err) {
      if (!(err instanceof ParleyHttpError)) throw err;
      if (err.code === 'BAD_CREDENTIALS' && o.register) {
        try {
          await register(http, o.name, o.password);
          log('info', 'account registered', { name: o.name });
          continue;
        } catch (e) {
          if (e instanceof ParleyHttpError && e.code === 'NAME_TAKEN') {
            throw new ParleyHttpError(e.status, 'BAD_CREDENTIALS', `${o.name} exists and this is not its password`);
          }
          if (!(e instanceof ParleyHttpError) || !retryable(e)) throw e;
        }
      } else if (!retryable(err)) throw err;
      const wait = Math.random() * Math.min(o.retryMaxMs, 500 * 2 ** Math.min(attempt, 16));
      log('warn', 'cannot sign in yet, retrying', { code: err.code, error: err.message, retryInMs: Math.round(wait) });
      await pause(wait);
    }
  }
  return null;
}

function retryable(e: ParleyHttpError): boolean {
  return e.code === 'NETWORK' || e.code === 'RATE_LIMITED' || e.status >= 500;
}

/** One session: answers messages until the client closes; resolves with why it closed. */
function serve(o: BotOptions, http: HttpOptions, bearer: string): Promise<ClosedReason | undefined> {
  if (stop.signal.aborted) return Promise.resolve('closed'); // stopped while signing in
  let socket: WebSocket | undefined;
  /** Answers sent and not yet confirmed by the server: answer id -> resolves the question's acknowledgement. */
  const unconfirmed = new Map<string, () => void>();
  const client = new ParleyClient({
    url: o.url.replace(/^http/, 'ws') + '/ws',
    connect: (url) => {
      socket = new WebSocket(url, { headers: { Authorization: `Bearer ${bearer}` } });
      socket.on('error', () => undefined); // the SDK sees the close that follows and decides
      return socket as unknown as WebSocketLike;
    },
    sessionValid: () => sessionValid(http, bearer),
    backoffMaxMs: o.retryMaxMs,
    // The question is acknowledged once its answer is the server's (see the header).
    beforeAck: (m: IncomingMessage) => reply(m),
  });

  function reply(m: IncomingMessage): Promise<void> {
    const id = answerId(m.from, m.id);
    const text = answer(m.text, new Date(), client.welcome?.limits.maxTextBytes ?? Limits.maxTextBytes);
    log('info', 'answering', { from: m.from, id: m.id, queued: m.queued, answer: id });
    return new Promise((resolve) => {
      unconfirmed.set(id, resolve);
      client.send(m.from, text, id);
    });
  }
  const confirmed = (id: string): void => {
    unconfirmed.get(id)?.();
    unconfirmed.delete(id);
  };
  client.on('receipt', ({ id }) => confirmed(id));
  client.on('failed', ({ id, to, code, message }) => {
    log('warn', 'answer refused', { to, answer: id, code, error: message });
    confirmed(id); // refused for good: acknowledging the question is all that is left to do
  });
  client.on('error', ({ code, message }) => log('warn', 'server error', { code, error: message }));
  client.on('state', ({ from, to }) => {
    if (to === 'open') log('info', 'bot online', { name: client.welcome?.name });
    else if (to === 'reconnecting' && from === 'open') log('warn', 'connection lost, reconnecting');
  });

  const onStop = (): void => client.close();
  stop.signal.addEventListener('abort', onStop);
  return new Promise((resolve) => {
    client.on('state', ({ to, reason }) => {
      if (to !== 'closed') return;
      stop.signal.removeEventListener('abort', onStop);
      const ws = socket;
      // Let the close handshake finish (our `close()` sent code 1000), at most 2 s.
      if (ws && ws.readyState !== WebSocket.CLOSED) {
        const timer = setTimeout(() => ws.terminate(), 2000);
        ws.once('close', () => {
          clearTimeout(timer);
          resolve(reason);
        });
      } else resolve(reason);
    });
    client.connect().catch(() => undefined); // a close before welcome arrives through the state event
  });
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const http: HttpOptions = { baseUrl: o.url };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log('info', 'stopping', { signal });
      stop.abort();
    });
  }
  for (;;) {
    const bearer = await token(o, http);
    if (bearer === null) return 0;
    const reason = await serve(o, http, bearer);
    switch (reason) {
      case 'closed':
        log('info', 'stopped');
        return 0;
      case 'unauthorized':
      case 'session-ended':
        log('info', 'session ended, signing in again', { reason });
        continue;
      default:
        // takeover, replaced: someone else signed in with this name; version, protocol: this code is wrong.
        log('error', 'connection closed for good', { reason });
        return 1;
    }
  }
}

main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  log('error', 'bot failed', { error: err instanceof ParleyHttpError ? `${err.code}: ${err.message}` : (err as Error).message });
  process.exitCode = 1;
});
