import { afterEach, describe, expect, it } from 'vitest';
import { register, signIn } from '../../client/sdk/http.ts';
import { CloseCode } from '../../shared/codes.ts';
import { Op, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { Harness, PASSWORD, wsUrl, STORE_KINDS } from '../support/harness.ts';
import { helloWire, wire } from '../support/wire.ts';

for (const kind of STORE_KINDS) {
describe(`${kind} store`, () => {
  const h = new Harness(kind);
  afterEach(() => h.cleanup());

  async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: { error?: { code: string } } & Record<string, unknown>; headers: Headers }> {
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json(), headers: res.headers };
  }

  describe('accounts', () => {
    it('registers, refuses names taken ignoring case and width, and accepts names in any script', async () => {
      const server = await h.server();
      expect((await postJson(`${server.url}/api/register`, { name: 'Bob', password: PASSWORD })).status).toBe(201);
      for (const name of ['bob', 'BOB', 'Ｂｏｂ']) {
        const r = await postJson(`${server.url}/api/register`, { name, password: PASSWORD });
        expect(r.status).toBe(409);
        expect(r.body.error?.code).toBe('NAME_TAKEN');
      }
      const r = await postJson(`${server.url}/api/register`, { name: '小明', password: PASSWORD });
      expect(r.status).toBe(201);
      const s = await signIn({ baseUrl: server.url }, '小明', PASSWORD);
      expect(s.name).toBe('小明');
    });

    it('rejects bad names, short passwords and malformed bodies with codes', async () => {
      const server = await h.server();
      for (const name of ['', 'a'.repeat(33), 'bad name', '<script>', '-dash', 42]) {
        expect((await postJson(`${server.url}/api/register`, { name, password: PASSWORD })).body.error?.code).toBe('BAD_NAME');
      }
      expect((await postJson(`${server.url}/api/register`, { name: 'ok', password: 'short' })).body.error?.code).toBe('BAD_PASSWORD');
      const raw = await fetch(`${server.url}/api/register`, { method: 'POST', body: '{not json' });
      expect(raw.status).toBe(400);
      expect(((await raw.json()) as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
      const big = await fetch(`${server.url}/api/register`, { method: 'POST', body: 'x'.repeat(64 * 1024) });
      expect(big.status).toBe(413);
    });

    it('wrong password and unknown name get the same BAD_CREDENTIALS; repeated failures are rate limited', async () => {
      const server = await h.server();
      await register({ baseUrl: server.url }, 'carol', PASSWORD);
      const wrong = await postJson(`${server.url}/api/signin`, { name: 'carol', password: 'not the password' });
      const unknown = await postJson(`${server.url}/api/signin`, { name: 'nobody', password: PASSWORD });
      expect([wrong.status, unknown.status]).toEqual([401, 401]);
      expect(wrong.body).toEqual(unknown.body);
      let limited = 0;
      for (let i = 0; i < 15; i++) {
        const r = await postJson(`${server.url}/api/signin`, { name: 'carol', password: 'wrong again' });
        if (r.status === 429) {
          expect(r.body.error?.code).toBe('RATE_LIMITED');
          limited++;
        }
      }
      expect(limited).toBeGreaterThan(0);
    });

    it('sign-in sets an HttpOnly SameSite cookie; sign-out ends the session', async () => {
      const server = await h.server();
      await register({ baseUrl: server.url }, 'dave', PASSWORD);
      const r = await postJson(`${server.url}/api/signin`, { name: 'dave', password: PASSWORD });
      const cookie = r.headers.get('set-cookie') ?? '';
      expect(cookie).toMatch(/^parley_session=[A-Za-z0-9_-]{40,};/);
      expect(cookie).toContain('HttpOnly');
      expect(cookie).toContain('SameSite=Strict');
      const token = r.body.token as string;
      const who = await fetch(`${server.url}/api/session`, { headers: { Cookie: `parley_session=${token}` } });
      expect(await who.json()).toMatchObject({ name: 'dave' });
      const live = await helloWire(h.rawSocket(wsUrl(server.url), token));
      await postJson(`${server.url}/api/signout`, {}, { Authorization: `Bearer ${token}` });
      expect((await live.closed).code).toBe(CloseCode.SESSION_ENDED);
      expect((await fetch(`${server.url}/api/session`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(401);
      const w = wire(h.rawSocket(wsUrl(server.url), token));
      await expect(w.opened).rejects.toMatchObject({ status: 401 });
    });
  });

  describe('WebSocket upgrades', () => {
    it('refuses missing or unknown tokens and foreign origins; accepts the server\'s own origin', async () => {
      const server = await h.server();
      const token = await h.account(server, 'erin');
      await expect(wire(h.rawSocket(wsUrl(server.url), undefined)).opened).rejects.toMatchObject({ status: 401 });
      await expect(wire(h.rawSocket(wsUrl(server.url), 'x'.repeat(43))).opened).rejects.toMatchObject({ status: 401 });
      await expect(wire(h.rawSocket(wsUrl(server.url), token, { Origin: 'https://evil.example' })).opened).rejects.toMatchObject({ status: 403 });
      const own = wire(h.rawSocket(wsUrl(server.url), token, { Origin: server.url }));
      await own.opened;
    });

    it('a cookie authenticates a browser-style upgrade', async () => {
      const server = await h.server();
      const token = await h.account(server, 'fay');
      const w = await helloWire(h.rawSocket(wsUrl(server.url), undefined, { Cookie: `parley_session=${token}`, Origin: server.url }));
      expect(w.frames.some((f) => f.t === Op.Welcome)).toBe(true);
    });

    it('an unsupported protocol version gets VERSION_UNSUPPORTED and close 4004', async () => {
      const server = await h.server();
      const w = wire(h.rawSocket(wsUrl(server.url), await h.account(server, 'gus')));
      await w.opened;
      w.send({ t: Op.Hello, v: PROTOCOL_VERSION + 1 });
      expect(await w.next(Op.Error)).toMatchObject({ code: 'VERSION_UNSUPPORTED' });
      expect((await w.closed).code).toBe(CloseCode.VERSION);
    });

    it('reaps a session that sends nothing with close code 4005', async () => {
      const server = await h.server({ IDLE_TIMEOUT_SEC: '2' });
      const w = await helloWire(h.rawSocket(wsUrl(server.url), await h.account(server, 'hal')));
      expect((await w.closed).code).toBe(CloseCode.IDLE);
    });
  });

  describe('one live session per name', () => {
    it('a new sign-in takes over: the old session gets the notice and close code 4001, the SDK stops', async () => {
      const server = await h.server();
      const first = h.client(server, await h.account(server, 'ivy'));
      await first.connect();
      const notice = first.once('takeover');
      const closed = first.once('state', (s) => s.to === 'closed');
      const second = h.client(server, await h.account(server, 'ivy', PASSWORD, { register: false }));
      await second.connect();
      expect((await notice).message).toMatch(/elsewhere/);
      expect((await closed).reason).toBe('takeover');
      expect(server.hub.onlineCount).toBe(1);
      // The newer session works.
      const other = h.client(server, await h.account(server, 'jay'));
      await other.connect();
      const got = second.once('message');
      other.send('ivy', 'still there?');
      expect((await got).text).toBe('still there?');
    });

    it('50 racing sign-ins for one name leave exactly one live session; every other one is told and closed', async () => {
      const server = await h.server();
      await register({ baseUrl: server.url }, 'kim', PASSWORD);
      const url = wsUrl(server.url);
      const attempts = await Promise.all(Array.from({ length: 50 }, async () => {
        const { token } = await signIn({ baseUrl: server.url }, 'kim', PASSWORD);
        const w = wire(h.rawSocket(url, token));
        await w.opened;
        w.send({ t: Op.Hello, v: PROTOCOL_VERSION });
        return w;
      }));
      // Every sign-in has completed. A socket still open may have a takeover close in flight: a ping settles it,
      // because the server answers in order and a closed socket answers nothing.
      const outcomes = await Promise.all(attempts.map(async (w, i) => {
        const first = await Promise.race([w.closed.then((c) => c.code), w.next(Op.Welcome).then(() => undefined)]);
        if (first !== undefined) return { w, closed: first };
        w.send({ t: Op.Ping, n: i });
        return Promise.race([w.closed.then((c) => ({ w, closed: c.code as number | undefined })), w.next(Op.Pong).then(() => ({ w, closed: undefined }))]);
      }));
      const live = outcomes.filter((o) => o.closed === undefined);
      expect(live).toHaveLength(1);
      const replaced = outcomes.filter((o) => o.closed !== undefined);
      expect(replaced).toHaveLength(49);
      for (const o of replaced) {
        expect(o.closed).toBe(CloseCode.TAKEOVER);
        expect(o.w.frames.some((f) => f.t === Op.Takeover)).toBe(true);
      }
      expect(server.hub.onlineCount).toBe(1);
    });
  });

  describe('presence', () => {
    it('a follower sees a contact go online and offline', async () => {
      const server = await h.server();
      const lee = h.client(server, await h.account(server, 'lee'), { follow: ['Max'] });
      const maxToken = await h.account(server, 'max');
      const initial = lee.once('presence');
      await lee.connect();
      expect(await initial).toEqual({ name: 'Max', online: false });
      const online = lee.once('presence', (p) => p.online);
      const max = h.client(server, maxToken);
      await max.connect();
      expect(await online).toEqual({ name: 'max', online: true });
      const offline = lee.once('presence', (p) => !p.online);
      max.close();
      expect(await offline).toEqual({ name: 'max', online: false });
    });
  });
});
}
