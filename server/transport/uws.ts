/**
 * The uWebSockets.js adapter: HTTP API, static files, health, and the WebSocket endpoint. Thin on purpose:
 * it copies what it needs out of `req` synchronously, registers `onAborted` before any await, corks async
 * writes, and hands the core one `Session` per socket that is also its `Conn`. No protocol logic lives here.
 */
import uWS from 'uWebSockets.js';
import { CHUNK_HEADER_BYTES } from '../../shared/chunk.ts';
import type { Config } from '../config.ts';
import type { Accounts, Auth } from '../core/accounts.ts';
import { AppError } from '../core/errors.ts';
import { Session, type Hub } from '../core/hub.ts';
import type { Router } from '../core/router.ts';
import type { Logger } from '../core/logger.ts';
import { clientAddress, normalizeAddress } from './client-address.ts';
import { StaticFiles } from './static.ts';

export const SESSION_COOKIE = 'parley_session';
const MAX_BODY_BYTES = 16 * 1024;
/** Frames beyond this are cut off by uWS itself (the client sees 1006). */
export const HARD_FRAME_CAP = 1024 * 1024;

/** Fails fast when the package fell back to its slow Node.js shim instead of the native binary. */
export function assertNativeUws(): void {
  const native = uWS as unknown as Record<string, unknown>;
  if (typeof native.SSLApp !== 'function' || typeof native.getParts !== 'function') {
    throw new Error(
      'uWebSockets.js did not load its native binary and fell back to a slow Node.js shim. Parley refuses to run ' +
      `that way. This build supports Node 20 on Linux/macOS x64/arm64 (you run Node ${process.versions.node}, ` +
      `modules ABI ${process.versions.modules}, ${process.platform}-${process.arch}); see the warning printed above.`,
    );
  }
}

let nextConnId = 1;

/** A socket's session as the transport holds it: the core's `Session`, made here (see `startTransport`). */
type SocketSession = Session & {
  /** uWS reported the socket closed: later writes are dropped. */
  gone(): void;
};

/**
 * The socket's typed user data. A plain object on purpose: uWS copies the own properties of what `upgrade`
 * is given into a fresh object, so a class's methods would be lost.
 */
interface UserData {
  /** Set by the upgrade, handed to the hub at open, then dropped. */
  auth: Auth | undefined;
  session: SocketSession | undefined;
}

/** Sessions with frames waiting for the end of this event-loop turn. */
const dirty: Array<{ flush(): void }> = [];

function flushAll(): void {
  for (const c of dirty.splice(0)) c.flush();
}

/** `queued` of a session whose socket closed: a marker rather than one more field per connection. */
const CLOSED: Uint8Array[] = [];

export interface Transport {
  port: number;
  /** Stops listening; open sockets stay until the hub closes them. */
  stopListening(): void;
  /** Number of open WebSockets. */
  readonly sockets: number;
}

export interface TransportDeps {
  config: Readonly<Config>;
  hub: Hub;
  accounts: Accounts;
  log: Logger;
  storeKind: string;
  /** This node's router, for `/healthz` (its kind and the bus state). */
  router?: Pick<Router, 'kind' | 'health'>;
}

function text(buf: ArrayBuffer): string {
  return Buffer.from(buf).toString();
}

function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Token from `Authorization: Bearer …` (other clients) or the session cookie (browsers). */
function tokenOf(authorization: string, cookie: string): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(authorization);
  return m ? m[1] : cookieValue(cookie, SESSION_COOKIE);
}

export function startTransport(deps: TransportDeps): Promise<Transport> {
  const { config, hub, accounts, log } = deps;
  const tls = config.tls !== undefined;
  const trustedProxies: ReadonlySet<string> = new Set(config.trustedProxies.map(normalizeAddress));
  const app = tls ? uWS.SSLApp({ cert_file_name: config.tls!.cert, key_file_name: config.tls!.key }) : uWS.App();
  const statics = new StaticFiles(config.clientDir, log);
  let sockets = 0;

  /**
   * A socket's session and connection in one object (see core/conn.ts): tens of thousands sit idle, and one
   * object per connection is smaller than two. Made per transport so that it can log through this transport's
   * logger without a field for it.
   *
   * Frames are queued and written once per event-loop turn inside one cork: a message fans out from the
   * sender's handler to the recipient's socket, which uWS does not cork, so writing at once would cost a
   * syscall per frame.
   */
  class UwsSession extends Session implements SocketSession {
    readonly id = nextConnId++;
    /** Frames waiting for the end of this turn; CLOSED once the socket closed or was ended. */
    private queued: Uint8Array[] | undefined;

    constructor(private readonly ws: uWS.WebSocket<UserData>, auth: Auth) {
      super(auth, hub.frameBurst);
    }

    protected get rootLog(): Logger {
      return log;
    }

    write(bytes: Uint8Array): void {
      const q = this.queued;
      if (q === CLOSED) return;
      if (q) {
        q.push(bytes);
        return;
      }
      this.queued = [bytes];
      if (dirty.push(this) === 1) setImmediate(flushAll);
    }

    forward(bytes: Uint8Array): void {
      if (this.queued === CLOSED) return;
      this.flush();
      this.ws.send(bytes, true);
    }

    flush(): void {
      const frames = this.queued;
      if (!frames || frames === CLOSED) return;
      this.queued = undefined;
      this.ws.cork(() => {
        for (const f of frames) this.ws.send(f, true);
      });
    }

    end(code: number, reason: string): void {
      if (this.queued === CLOSED) return;
      this.flush(); // a takeover notice or shutdown frame goes out before the close
      this.queued = CLOSED;
      this.ws.end(code, reason);
    }

    gone(): void {
      this.queued = CLOSED;
    }

    buffered(): number {
      return this.queued === CLOSED ? 0 : this.ws.getBufferedAmount();
    }
  }

  /**
   * The server's own origins: the configured public origin, else the address it listens on (filled in once the
   * port is known). Never the request's `Host` header: a DNS-rebinding page sends `Host` and `Origin` of its
   * own name, and both would match.
   */
  const ownOrigins = new Set<string>(config.publicOrigin ? [config.publicOrigin] : []);
  const originAllowed = (origin: string): boolean => {
    if (origin === '') return true; // not a browser: it authenticates with a bearer token
    return ownOrigins.has(origin) || config.allowedOrigins.includes(origin);
  };

  const securityHeaders = (res: uWS.HttpResponse): void => {
    res.writeHeader('X-Content-Type-Options', 'nosniff');
    res.writeHeader('Referrer-Policy', 'no-referrer');
    res.writeHeader('Cache-Control', 'no-store');
  };

  const sendJson = (res: uWS.HttpResponse, status: string, body: unknown, extraHeaders: Array<[string, string]> = []): void => {
    res.cork(() => {
      res.writeStatus(status);
      securityHeaders(res);
      res.writeHeader('Content-Type', 'application/json; charset=utf-8');
      for (const [k, v] of extraHeaders) res.writeHeader(k, v);
      res.end(JSON.stringify(body));
    });
  };

  const sendError = (res: uWS.HttpResponse, err: unknown): void => {
    const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
    if (!(err instanceof AppError)) log.error({ err }, 'request failed');
    sendJson(res, `${e.httpStatus} ${statusText(e.httpStatus)}`, { error: { code: e.code, message: e.message } });
  };

  /** Reads a small JSON body; rejects oversize or malformed bodies with coded errors. */
  const readJson = (res: uWS.HttpResponse, state: { aborted: boolean }): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.onData((chunk, isLast) => {
        if (state.aborted) return;
        size += chunk.byteLength;
        if (size > MAX_BODY_BYTES) {
          if (size - chunk.byteLength > MAX_BODY_BYTES) return; // already answered
          // Answer and close now rather than reading the rest of the body (uWS would keep feeding onData).
          state.aborted = true;
          const e = new AppError('TOO_LARGE', `request bodies are limited to ${MAX_BODY_BYTES} bytes`);
          reject(e);
          res.cork(() => {
            res.writeStatus(`${e.httpStatus} ${statusText(e.httpStatus)}`);
            securityHeaders(res);
            res.writeHeader('Content-Type', 'application/json; charset=utf-8');
            res.end(JSON.stringify({ error: { code: e.code, message: e.message } }), true);
          });
          return;
        }
        chunks.push(Buffer.from(chunk.slice(0))); // copy: uWS reuses the chunk's memory after this callback
        if (!isLast) return;
        try {
          const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
          if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
          resolve(v as Record<string, unknown>);
        } catch {
          reject(new AppError('BAD_REQUEST', 'the body must be a JSON object'));
        }
      });
    });

  const cookieFor = (token: string, maxAgeSec: number): string =>
    `${SESSION_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSec}${tls ? '; Secure' : ''}`;

  /** POST handlers: common request copying, origin check, abort tracking and error mapping. */
  const post = (path: string, handle: (body: Record<string, unknown>, ctx: { address: string; token: string | undefined }, res: uWS.HttpResponse) => Promise<void>): void => {
    app.post(path, (res, req) => {
      const origin = req.getHeader('origin');
      const token = tokenOf(req.getHeader('authorization'), req.getHeader('cookie'));
      const address = clientAddress(text(res.getRemoteAddressAsText()), req.getHeader('x-forwarded-for'), trustedProxies);
      const state = { aborted: false };
      res.onAborted(() => (state.aborted = true));
      if (!originAllowed(origin)) {
        sendError(res, new AppError('FORBIDDEN_ORIGIN', 'origin not allowed'));
        return;
      }
      if (hub.state !== 'running') {
        sendError(res, new AppError('SHUTTING_DOWN', 'the server is shutting down'));
        return;
      }
      readJson(res, state)
        .then((body) => handle(body, { address, token }, res))
        .catch((err: unknown) => {
          if (!state.aborted) sendError(res, err);
        });
    });
  };

  post('/api/register', async (body, { address }, res) => {
    const { name } = await accounts.register(body.name, body.password, address);
    sendJson(res, '201 Created', { name });
  });

  post('/api/signin', async (body, { address }, res) => {
    const s = await accounts.signIn(body.name, body.password, address);
    const maxAge = Math.floor((s.expires - Date.now()) / 1000);
    sendJson(res, '200 OK', { name: s.name, token: s.token, expires: s.expires }, [['Set-Cookie', cookieFor(s.token, maxAge)]]);
  });

  // The settings panel: both need the current password again (see Accounts.reauthenticate).
  post('/api/account/password', async (body, { token }, res) => {
    if (!token) throw new AppError('UNAUTHORIZED', 'not signed in');
    await accounts.changePassword(token, body.current, body.password);
    sendJson(res, '200 OK', { ok: true });
  });

  post('/api/account/delete', async (body, { token }, res) => {
    if (!token) throw new AppError('UNAUTHORIZED', 'not signed in');
    await accounts.deleteAccount(token, body.password);
    sendJson(res, '200 OK', { ok: true }, [['Set-Cookie', cookieFor('', 0)]]);
  });

  post('/api/signout', async (_body, { token }, res) => {
    if (token) await accounts.signOut(token);
    sendJson(res, '200 OK', { ok: true }, [['Set-Cookie', cookieFor('', 0)]]);
  });

  app.get('/api/session', (res, req) => {
    const token = tokenOf(req.getHeader('authorization'), req.getHeader('cookie'));
    const state = { aborted: false };
    res.onAborted(() => (state.aborted = true));
    (token ? accounts.authenticate(token) : Promise.resolve(null))
      .then((auth) => {
        if (state.aborted) return;
        if (!auth || auth.replaced) sendError(res, new AppError('UNAUTHORIZED', 'not signed in'));
        else sendJson(res, '200 OK', { name: auth.name, expires: auth.expires });
      })
      .catch((err: unknown) => {
        if (!state.aborted) sendError(res, err);
      });
  });

  // Adding a contact: does that name have an account? Signed-in only, rate limited per person (accounts.ts).
  app.get('/api/contacts/:name', (res, req) => {
    const token = tokenOf(req.getHeader('authorization'), req.getHeader('cookie'));
    const raw = req.getParameter(0) ?? '';
    const state = { aborted: false };
    res.onAborted(() => (state.aborted = true));
    (async () => {
      const auth = token ? await accounts.authenticate(token) : null;
      if (!auth || auth.replaced) throw new AppError('UNAUTHORIZED', 'not signed in');
      let name: string;
      try {
        name = decodeURIComponent(raw);
      } catch {
        throw new AppError('BAD_NAME', 'not a valid name');
      }
      return accounts.findContact(name, auth.key);
    })().then(
      (found) => {
        if (!state.aborted) sendJson(res, '200 OK', found);
      },
      (err: unknown) => {
        if (!state.aborted) sendError(res, err);
      },
    );
  });

  // Uptime checkers often ask with HEAD: the same status and headers as GET, no body.
  app.head('/healthz', (res) => {
    res.cork(() => {
      res.writeStatus('200 OK');
      securityHeaders(res);
      res.writeHeader('Content-Type', 'application/json');
      res.endWithoutBody();
    });
  });

  app.get('/healthz', (res) => {
    const storeUp = hub.storeHealthy;
    sendJson(res, '200 OK', {
      status: hub.state !== 'running' ? 'stopping' : storeUp && hub.busHealthy ? 'ok' : 'degraded',
      store: { kind: deps.storeKind, up: storeUp },
      node: deps.config.nodeId,
      ...(deps.router ? { bus: { kind: deps.router.kind, ...deps.router.health() } } : {}),
      online: hub.onlineCount,
      sockets,
      streams: hub.streams.size,
      uptimeSec: Math.round(process.uptime()),
    });
  });

  app.any('/api/*', (res) => sendError(res, new AppError('NOT_FOUND', 'no such API route')));

  app.ws<UserData>('/ws', {
    // The protocol's own limits (control frames, chunk size) are enforced by the decoder and the relay with
    // coded errors; this is only the hard cap past which uWS drops the connection without a close frame.
    maxPayloadLength: Math.max(HARD_FRAME_CAP, 2 * (CHUNK_HEADER_BYTES + config.maxChunkBytes)),
    // Bounded by what the protocol lets the server hold: one window per stream plus room for text.
    maxBackpressure: config.streamWindowBytes * config.maxStreamsPerUser + 8 * 1024 * 1024,
    closeOnBackpressureLimit: 1,
    // The hub's sweeper closes idle sessions with a documented code; uWS's timer is only a backstop for
    // sockets that stop answering pings.
    idleTimeout: Math.min(960, Math.max(8, Math.ceil((config.idleTimeoutMs / 1000) * 2 / 4) * 4)),
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const origin = req.getHeader('origin');
      const token = tokenOf(req.getHeader('authorization'), req.getHeader('cookie'));
      let aborted = false;
      res.onAborted(() => (aborted = true));
      const refuse = (status: string, code: string, message: string): void => {
        res.cork(() => {
          res.writeStatus(status);
          res.writeHeader('Content-Type', 'application/json');
          res.end(JSON.stringify({ error: { code, message } }));
        });
      };
      // RFC 6455 4.2.1: a handshake without a 16-byte base64 key is not a WebSocket upgrade.
      if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return refuse('400 Bad Request', 'BAD_REQUEST', 'malformed WebSocket upgrade: Sec-WebSocket-Key missing or invalid');
      if (hub.state !== 'running') return refuse('503 Service Unavailable', 'SHUTTING_DOWN', 'the server is shutting down');
      if (!originAllowed(origin)) return refuse('403 Forbidden', 'FORBIDDEN_ORIGIN', 'origin not allowed');
      if (!token) return refuse('401 Unauthorized', 'UNAUTHORIZED', 'sign in first');
      accounts.authenticate(token).then(
        (auth) => {
          if (aborted) return;
          if (!auth) return refuse('401 Unauthorized', 'UNAUTHORIZED', 'session unknown or expired; sign in again');
          // Not inside res.cork, against uWS's advice: in this uWS (20.30, the newest that runs on this glibc) a
          // cork around an upgrade made after an await can close the new socket right after `open`, with no close
          // frame (uNetworking/uWebSockets#1583, #1928; fixed upstream by #1929, 2026). cork() then reads the HTTP
          // state from memory that is already the WebSocket's. Uncorked, uWS prints one warning at the first
          // upgrade and the 101 goes out in its own write, as it would anyway.
          res.upgrade<UserData>({ auth, session: undefined }, key, protocol, extensions, context);
        },
        (err: unknown) => {
          if (aborted) return;
          const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
          if (!(err instanceof AppError)) log.error({ err }, 'upgrade failed');
          refuse(`${e.httpStatus} ${statusText(e.httpStatus)}`, e.code, e.message);
        },
      );
    },
    open: (ws) => {
      sockets++;
      const data = ws.getUserData();
      const auth = data.auth!;
      data.auth = undefined;
      // A session the hub turns away is already `closed`; frames it sends later are ignored.
      hub.open((data.session = new UwsSession(ws, auth)), auth);
    },
    message: (ws, message, isBinary) => {
      const { session } = ws.getUserData();
      if (!session) return;
      // The view is only valid during this call; the hub finishes with it synchronously (chunks are
      // forwarded by ws.send, which copies).
      if (isBinary) hub.frame(session, new Uint8Array(message));
      else hub.textFrame(session);
    },
    drain: (ws) => {
      const { session } = ws.getUserData();
      if (session) hub.drain(session);
    },
    close: (ws, code) => {
      sockets--;
      const { session } = ws.getUserData();
      if (!session) return;
      session.gone();
      hub.closed(session, code);
    },
  });

  // uWS hands the ws route only well-formed upgrades; a malformed one (no Sec-WebSocket-Key) arrives here as
  // a plain request, and must not get the page.
  const badUpgrade = (res: uWS.HttpResponse): void => sendJson(res, '400 Bad Request', {
    error: { code: 'BAD_REQUEST', message: 'malformed WebSocket upgrade: Sec-WebSocket-Key missing or invalid' },
  });
  app.any('/ws', badUpgrade);
  // Static files set their own Cache-Control (immutable for content-named files, revalidated for the page).
  const staticHeaders = (res: uWS.HttpResponse): void => {
    res.writeHeader('X-Content-Type-Options', 'nosniff');
    res.writeHeader('Referrer-Policy', 'no-referrer');
  };
  const serveStatic = (method: 'GET' | 'HEAD') => (res: uWS.HttpResponse, req: uWS.HttpRequest): void => {
    if (req.getHeader('upgrade') !== '') return badUpgrade(res);
    statics.serve(res, { method, url: req.getUrl(), acceptEncoding: req.getHeader('accept-encoding'), ifNoneMatch: req.getHeader('if-none-match') }, staticHeaders);
  };
  app.get('/*', serveStatic('GET'));
  app.head('/*', serveStatic('HEAD'));

  return new Promise((resolve, reject) => {
    app.listen(config.host, config.port, (listenSocket) => {
      if (!listenSocket) {
        reject(new Error(`cannot listen on ${config.host}:${config.port} (in use, or no permission)`));
        return;
      }
      const port = uWS.us_socket_local_port(listenSocket as unknown as uWS.us_socket);
      if (!config.publicOrigin) {
        const scheme = tls ? 'https' : 'http';
        const hosts = config.host === '0.0.0.0' || config.host === '::' ? ['127.0.0.1', 'localhost', '[::1]'] : [config.host.includes(':') ? `[${config.host}]` : config.host];
        if (config.host === '127.0.0.1') hosts.push('localhost');
        for (const h of hosts) ownOrigins.add(`${scheme}://${h}:${port}`);
      }
      resolve({
        port,
        stopListening: () => uWS.us_listen_socket_close(listenSocket),
        get sockets() {
          return sockets;
        },
      });
    });
  });
}

function statusText(status: number): string {
  const texts: Record<number, string> = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict',
    413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
  };
  return texts[status] ?? 'Error';
}
