/**
 * Defects found by an outside test of one node (issue 9), each reproduced on a real server and real sockets:
 * chunk floods past the limiter, racing sign-in guesses, unthrottled registration, secrets in logs, origin
 * checks that trusted `Host`, oversize bodies read to the end, malformed upgrades.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { register, signIn } from '../../client/sdk/http.ts';
import { startServer } from '../../server/app.ts';
import { createLogger } from '../../server/core/logger.ts';
import { CloseCode } from '../../shared/codes.ts';
import { encodeChunk } from '../../shared/chunk.ts';
import { Op } from '../../shared/protocol.ts';
import { Harness, PASSWORD, STORE_KINDS, testConfig, until, wsUrl } from '../support/harness.ts';
import { helloWire, wire } from '../support/wire.ts';

const h = new Harness();
afterEach(() => h.cleanup());

describe('every inbound frame pays into one limiter and one bad-frame count', () => {
  it('200,000 bogus chunk frames get a coded close while another pair keeps chatting', async () => {
    const server = await h.server();
    const mallory = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'mallory')));
    const alice = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
    const bob = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob')));
    const payload = new Uint8Array(4);
    let sent = 0;
    let closed: { code: number } | undefined;
    void mallory.closed.then((c) => (closed = c));
    // In bursts, so the chat below interleaves with the flood.
    const flood = (async () => {
      while (sent < 200_000 && !closed) {
        for (let i = 0; i < 5000 && mallory.ws.readyState === mallory.ws.OPEN; i++, sent++) mallory.ws.send(encodeChunk(777, 0, payload));
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 20; i++) {
      const id = `chat-during-flood-${String(i).padStart(2, '0')}`;
      alice.send({ t: Op.Send, id, to: 'bob', text: `hi ${i}` });
      const m = await bob.next(Op.Message, (f) => f.id === id);
      bob.send({ t: Op.Ack, tags: [m.tag] });
    }
    await flood;
    const { code } = await mallory.closed;
    expect([CloseCode.FLOOD, CloseCode.PROTOCOL]).toContain(code);
    const unknown = mallory.frames.filter((f) => f.t === Op.Error && f.code === 'STREAM_UNKNOWN').length;
    // The old relay answered every one of them and never closed.
    expect(unknown).toBeLessThanOrEqual(101);
    expect(bob.frames.filter((f) => f.t === Op.Message)).toHaveLength(20);
  });
});

describe('requeue after a takeover', () => {
  it('keeps send order, and a sender to the recipient who is back online is not refused for the cap', async () => {
    const server = await h.server({ QUEUE_CAP: '100' });
    const alice = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'alice')));
    const carol = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'carol')));
    const bob1 = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob')));
    const ids = Array.from({ length: 300 }, (_, i) => `inflight-${String(i).padStart(5, '0')}`);
    for (const id of ids) alice.send({ t: Op.Send, id, to: 'bob', text: id });
    await bob1.next(Op.Message, (m) => m.id === ids[299]);
    // Bob signs in again: the 300 unacked messages go back to the queue, three times the cap.
    const bob2 = wire(h.rawSocket(wsUrl(server.url), await h.account(server, 'bob', undefined, { register: false })));
    await bob2.opened;
    expect((await bob1.closed).code).toBe(CloseCode.TAKEOVER);
    await alice.next(Op.Receipt, (r) => r.id === ids[299] && r.state === 'queued');
    bob2.send({ t: Op.Hello, v: 1 });
    await bob2.next(Op.Welcome);
    carol.send({ t: Op.Send, id: 'carol-after-takeover', to: 'bob', text: 'still there?' });
    const r = await Promise.race([
      carol.next(Op.Receipt, (f) => f.id === 'carol-after-takeover'),
      carol.next(Op.Error, (f) => f.ref === 'carol-after-takeover'),
    ]);
    expect(r).toMatchObject({ t: Op.Receipt });
    const got: string[] = [];
    for (;;) {
      const m = await bob2.next(Op.Message, (f) => !got.includes(f.id));
      got.push(m.id);
      bob2.send({ t: Op.Ack, tags: [m.tag] });
      if (m.id === 'carol-after-takeover') break;
    }
    expect(got).toEqual([...ids, 'carol-after-takeover']);
  });
});

describe('sign-in and registration limits', () => {
  it('100 concurrent guesses at one name: no more than the limit are checked, and the right password sent 97th does not get in', async () => {
    const server = await h.server();
    await h.account(server, 'victim');
    const http = { baseUrl: server.url };
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) =>
      signIn(http, 'victim', i === 96 ? PASSWORD : `wrong guess ${i}`)));
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'OK' : (r.reason as { code: string }).code));
    // Registering signed the victim in once (a success gives its token back), so the burst of 10 is intact.
    expect(codes.filter((c) => c === 'BAD_CREDENTIALS').length + codes.filter((c) => c === 'OK').length).toBeLessThanOrEqual(10);
    expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBeGreaterThanOrEqual(90);
    expect(codes[96]).toBe('RATE_LIMITED');
  });

  it('registration is limited per address, and a taken name is refused before any hashing or budget is spent', async () => {
    const server = await h.server({ REGISTRATIONS_PER_MINUTE: '3' });
    const http = { baseUrl: server.url };
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => register(http, `loop${i}`, PASSWORD)));
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'OK' : (r.reason as { code: string }).code));
    expect(codes.filter((c) => c === 'OK')).toHaveLength(3);
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(13);
    // The budget is spent, yet a taken name still says so: that check comes before the limiter and the hash.
    await expect(register(http, 'loop0', PASSWORD)).rejects.toMatchObject({ code: 'NAME_TAKEN' });
  });
});

describe('logs', () => {
  it('a password typed into the name field appears in no log line, even at debug level', async () => {
    const lines: string[] = [];
    const dir = h.tempDir();
    const config = testConfig(dir, { LOG_LEVEL: 'debug' });
    const server = await startServer(config, { log: createLogger('debug', (l) => lines.push(l)) });
    h.servers.push(server);
    const http = { baseUrl: server.url };
    await register(http, 'carol', PASSWORD);
    const secret = 'Hunter2Secret99';
    await expect(signIn(http, secret, secret)).rejects.toMatchObject({ code: 'BAD_CREDENTIALS' });
    await expect(signIn(http, 'carol', secret)).rejects.toMatchObject({ code: 'BAD_CREDENTIALS' });
    await expect(signIn(http, 'carol', PASSWORD)).resolves.toMatchObject({ name: 'carol' });
    expect(lines.some((l) => l.includes('sign-in failed'))).toBe(true);
    for (const l of lines) {
      expect(l).not.toContain(secret);
      expect(l).not.toContain(PASSWORD);
    }
  });
});

describe('HTTP and upgrade edges', () => {
  it('a DNS-rebinding shaped request (Host and Origin of another name) is refused; the listening origin is accepted', async () => {
    const server = await h.server();
    const token = await h.account(server, 'alice');
    const evil = wire(h.rawSocket(wsUrl(server.url), token, { Host: 'evil.example', Origin: 'http://evil.example' }));
    await expect(evil.opened).rejects.toMatchObject({ status: 403 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/api/signin`, { method: 'POST', headers: { Host: 'evil.example', Origin: 'http://evil.example', 'Content-Type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ name: 'alice', password: PASSWORD }));
    });
    expect(status).toBe(403);
    const own = wire(h.rawSocket(wsUrl(server.url), token, { Origin: server.url }));
    await own.opened;
    const local = wire(h.rawSocket(wsUrl(server.url), token, { Origin: server.url.replace('127.0.0.1', 'localhost') }));
    await local.opened;
  });

  it('a 20 MiB streamed body gets 413 and the request ends at once, not after the body was read', async () => {
    const server = await h.server();
    const total = 20 * 1024 * 1024;
    let produced = 0;
    const body = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        produced += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024, 0x61));
      },
    });
    // The client keeps writing until the server closes the connection: the bytes it got to write tell whether
    // the server read the body to its end.
    let status = 0;
    let connection: string | undefined;
    await new Promise<void>((resolve) => {
      const req = request(`${server.url}/api/register`, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
        status = res.statusCode ?? 0;
        connection = res.headers.connection;
        res.resume();
      });
      req.on('error', () => undefined); // EPIPE / ECONNRESET once the server hangs up: expected
      req.on('close', () => resolve());
      body.pipe(req);
    });
    body.destroy();
    expect(status).toBe(413);
    // The server says it hangs up (the old one answered, kept the connection, and went on reading).
    expect(connection).toBe('close');
    expect(produced).toBeLessThan(total / 2);
  });

  it('an upgrade without Sec-WebSocket-Key gets 400, not the page', async () => {
    const server = await h.server();
    const { port } = new URL(server.url);
    const head = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), '127.0.0.1', () => {
        sock.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n');
      });
      let got = '';
      sock.on('data', (d) => {
        got += d.toString();
        if (got.includes('\r\n\r\n')) {
          sock.destroy();
          resolve(got);
        }
      });
      sock.on('error', reject);
    });
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  });
});

describe('the follow index', () => {
  it('memory after 500,000 follows is back to its baseline once the socket closed (measured in a child process)', async () => {
    const { execFile } = await import('node:child_process');
    const dir = h.tempDir();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/support/follow-child.ts', dir, '500000'],
        { cwd: new URL('../..', import.meta.url).pathname, maxBuffer: 1 << 20 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    const { before, after, presence } = JSON.parse(out.trim().split('\n').pop()!) as { before: number; after: number; presence: number };
    expect(presence).toBe(500_000);
    // The old index kept an empty set per name ever followed: about 100 MiB here.
    expect((after - before) / (1024 * 1024)).toBeLessThan(8);
  }, 120_000);
});

describe('look-alike names', () => {
  it('the listed look-alikes are refused with a coded reason; 小明, Ольга and Ελένη register', async () => {
    const server = await h.server();
    const http = { baseUrl: server.url };
    await register(http, 'bob', PASSWORD);
    await register(http, 'bib', PASSWORD);
    const lookAlikes: Array<[string, RegExp]> = [
      ['bоb', /mixes scripts/], // Cyrillic о
      ['bοb', /mixes scripts/], // Greek ο
      ['bob\u034F', /invisible/],
      ['bob\uFE0F', /invisible/],
      ['bob\u3164', /invisible/],
      ['\u3164\u3164\u3164', /invisible/],
      ['bob\u0301', /combining mark/],
      ['b\u0336ob', /combining mark/],
      ['bıb', /looks like an existing account/], // dotless ı: skeleton `bib`
    ];
    for (const [name, why] of lookAlikes) {
      const err = await register(http, name, PASSWORD).then(() => undefined, (e: { code: string; message: string }) => e);
      expect(err, JSON.stringify(name)).toMatchObject({ code: 'NAME_CONFUSABLE' });
      expect(err!.message, JSON.stringify(name)).toMatch(why);
    }
    for (const name of ['小明', 'Ольга', 'Ελένη', 'René', 'नमस्ते', 'Tanaka太郎']) {
      await expect(register(http, name, PASSWORD), name).resolves.toEqual({ name });
    }
  });
});

describe('receipts that outlive the sender\'s session', () => {
  for (const kind of STORE_KINDS) {
    it(`${kind}: \`delivered\` reached while the sender was offline reaches it when it is back`, async () => {
      const hk = kind === 'embedded' ? h : new Harness(kind);
      try {
        const server = await hk.server();
        const aliceToken = await hk.account(server, 'alice');
        await hk.account(server, 'bob');
        const alice = await helloWire(hk.rawSocket(wsUrl(server.url), aliceToken));
        const ids = ['while-away-0001', 'while-away-0002', 'while-away-0003'];
        for (const id of ids) alice.send({ t: Op.Send, id, to: 'bob', text: id });
        for (const id of ids) await alice.next(Op.Receipt, (r) => r.id === id && r.state === 'queued');
        alice.ws.close();
        await alice.closed;
        const bob = await helloWire(hk.rawSocket(wsUrl(server.url), await hk.account(server, 'bob', undefined, { register: false })));
        for (const id of ids) {
          const m = await bob.next(Op.Message, (f) => f.id === id);
          bob.send({ t: Op.Ack, tags: [m.tag] });
        }
        // Ack handled and its receipt kept: the queue is empty once the acks were processed.
        await until(() => server.hub.onlineCount === 1, 'alice gone');
        const back = await helloWire(hk.rawSocket(wsUrl(server.url), aliceToken));
        for (const id of ids) await back.next(Op.Receipt, (r) => r.id === id && r.state === 'delivered');
      } finally {
        if (hk !== h) await hk.cleanup();
      }
    });
  }
});


// With MONGODB_URI set the harness uses that real server, which a test cannot stop and restart: skipped then.
describe.skipIf(!!process.env.MONGODB_URI)('order across retries (MongoDB stand-in stopped and restarted)', () => {
  const hm = new Harness('mongodb');
  afterEach(() => hm.cleanup());

  it('messages refused during a store outage reach the offline recipient in send order', async () => {
    const mongo = await hm.mongo();
    const server = await hm.server();
    const alice = hm.client(server, await hm.account(server, 'alice'));
    await alice.connect();
    await hm.account(server, 'carol'); // offline throughout
    mongo.kill();
    const firstError = alice.once('error', (e) => e.code === 'STORE_UNAVAILABLE');
    const ids = [alice.send('carol', 'm0')];
    await firstError;
    for (let i = 1; i < 60; i++) ids.push(alice.send('carol', `m${i}`));
    await mongo.start();
    const queued = new Set<string>();
    alice.on('receipt', (r) => r.state === 'queued' && queued.add(r.id));
    await until(() => alice.unconfirmed.length === 0, 'every message confirmed', 30_000);
    const carol = hm.client(server, await hm.account(server, 'carol', undefined, { register: false }));
    const received: string[] = [];
    carol.on('message', (m) => received.push(m.id));
    await carol.connect();
    await until(() => received.length === ids.length, 'all delivered');
    expect(received).toEqual(ids);
  });
});

describe('hostile viewers', () => {
  it('8 viewers that grant credit and never read are held below the server-wide bound; a 9th stream gets STREAM_CAPACITY', async () => {
    const WINDOW = 256 * 1024;
    const CHUNK = 64 * 1024;
    const SIZE = 4 * 1024 * 1024;
    const server = await h.server({ STREAM_WINDOW_KB: '256', STREAM_MEMORY_MB: '2', MAX_CHUNK_KB: '64' });
    const bound = 2 * 1024 * 1024;
    let maxHeld = 0;
    const sample = (): void => void (maxHeld = Math.max(maxHeld, server.hub.streams.heldBytes));
    const pairs = [];
    for (let i = 0; i < 9; i++) {
      const sender = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, `sender${i}`)));
      const viewer = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, `viewer${i}`)));
      sender.send({ t: Op.StreamOffer, ref: `offer-${i}`, to: `viewer${i}`, name: 'clip.webm', size: SIZE, mime: 'video/webm', container: 'webm' });
      const offered = await viewer.next(Op.StreamOffered);
      // Hostile: grants the whole file at once, then stops reading its socket.
      viewer.send({ t: Op.StreamAnswer, sid: offered.sid, accept: true, credit: SIZE });
      pairs.push({ sender, viewer, sid: offered.sid });
    }
    const ninth = pairs.pop()!;
    expect(await ninth.viewer.next(Op.Error, (e) => e.ref === ninth.sid)).toMatchObject({ code: 'STREAM_CAPACITY' });
    await ninth.sender.next(Op.StreamAborted, (f) => f.sid === ninth.sid);
    const payload = new Uint8Array(CHUNK);
    const done = pairs.map(({ sender, viewer, sid }) => {
      (viewer.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      let offset = 0;
      let granted = 0;
      return new Promise<number>((resolve, reject) => {
        const step = (): void => {
          const grants = sender.frames.filter((f) => f.t === Op.StreamGranted && f.sid === sid) as Array<{ bytes: number }>;
          const total = grants.reduce((n, g) => n + g.bytes, 0);
          if (sender.frames.some((f) => f.t === Op.StreamAborted)) reject(new Error('stream aborted'));
          if (total === granted) return;
          granted = total;
          while (offset + CHUNK <= granted) {
            sender.ws.send(encodeChunk(sid, offset, payload));
            offset += CHUNK;
            // Re-granting as if it had read, the way a hostile viewer would: the server must not pass it on.
            viewer.send({ t: Op.StreamCredit, sid, bytes: CHUNK });
          }
          sample();
          // One window relayed: from here credit passes on only as the viewer's socket drains.
          if (offset >= WINDOW) resolve(offset);
        };
        sender.ws.on('message', step);
        step(); // the first grant came with the accept, before this listener
      });
    });
    const sent = await Promise.all(done);
    sample();
    expect(sent.every((n) => n >= WINDOW)).toBe(true);
    expect(maxHeld).toBeLessThanOrEqual(bound + CHUNK);
    for (const { viewer } of pairs) expect(viewer.ws.readyState).toBe(viewer.ws.OPEN);
  });
});
