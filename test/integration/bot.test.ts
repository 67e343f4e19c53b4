/**
 * The example bot (scripts/bot.ts) as a child process against a real server (also a child, so it can be killed
 * with SIGKILL and started again on the same data directory), and a raw client that asks it things. The bot
 * reaches the server through a TCP forwarder (test/support/throttle.ts, unthrottled) that keeps one address
 * across the restart, as a load balancer would: the killed server's port cannot be listened on again at once
 * (its connections linger in TIME_WAIT).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { Op, type MessageFrame } from '../../shared/protocol.ts';
import { baseEnv, startChild, type ChildServer } from '../support/child.ts';
import { Harness, wsUrl } from '../support/harness.ts';
import { ROOT } from '../support/processes.ts';
import { startThrottle, type Throttle } from '../support/throttle.ts';
import { helloWire, type Wire } from '../support/wire.ts';

const BOT_PASSWORD = 'bot password 123';

interface Bot {
  proc: ChildProcess;
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** Resolves with the first log line (seen already or to come) that matches. */
  logged(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function startBot(url: string, args: string[] = []): Bot {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/bot.ts', '--url', url, '--name', 'echobot', '--register', '--retry-max-ms', '300', ...args], {
    cwd: ROOT, env: { ...baseEnv(), PARLEY_BOT_PASSWORD: BOT_PASSWORD }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line) as Record<string, unknown>;
    logs.push(entry);
    for (const w of [...waiters]) if (w.pred(entry)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(entry);
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc, logs, exited,
    logged: (pred) => new Promise((resolve) => {
      const seen = logs.find(pred);
      if (seen) resolve(seen);
      else waiters.push({ pred, resolve });
    }),
  };
}

describe('example bot', () => {
  const h = new Harness('embedded');
  const servers: ChildServer[] = [];
  const bots: Bot[] = [];
  const fronts: Throttle[] = [];
  /** Ids of the bot's answers seen so far: an answer sent again after a crash has the same id (see `ask`). */
  const answered = new Set<string>();
  afterEach(async () => {
    for (const b of bots.splice(0)) if (b.proc.exitCode === null) b.proc.kill('SIGKILL');
    for (const f of fronts.splice(0)) await f.close();
    answered.clear();
    for (const s of servers.splice(0)) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await h.cleanup();
  });

  /**
   * Asks the bot `text` as message `id` and returns its answer, acknowledged. Like any client it acknowledges and
   * skips a message whose id it has seen: an answer delivered just before a crash, whose `delivered` never
   * reached the bot, is sent again by the bot's outbox after the restart, with the same id.
   */
  async function ask(w: Wire, id: string, text: string): Promise<MessageFrame> {
    w.send({ t: Op.Send, id, to: 'echobot', text });
    const m = await w.next(Op.Message, (f) => {
      if (f.from !== 'echobot') return false;
      w.send({ t: Op.Ack, tags: [f.tag] });
      return !answered.has(f.id);
    });
    answered.add(m.id);
    return m;
  }

  it('answers one-to-one messages, survives kill -9 and a restart of the server, and exits 0 on SIGINT', async () => {
    const dataDir = h.tempDir();
    const first = await startChild({ DATA_DIR: dataDir });
    servers.push(first);
    const upstream = { port: first.port };
    const front = await startThrottle(upstream, 1 << 30);
    fronts.push(front);
    const bot = startBot(front.url);
    bots.push(bot);
    await bot.logged((l) => l.msg === 'bot online');

    const token = await h.account(first, 'alice');
    const alice = await helloWire(h.rawSocket(wsUrl(first.url), token));
    expect((await ask(alice, 'ask-time-0001', '/time')).text).toMatch(/^It is \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(UTC\)\.$/);
    expect((await ask(alice, 'ask-echo-0001', 'hello, bot')).text).toBe('You said: hello, bot');
    expect((await ask(alice, 'ask-help-0001', '/HELP')).text).toContain('/time');

    first.proc.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await alice.closed;

    // The same data directory: the bot's session stays valid; its address (the forwarder's) too.
    const second = await startChild({ DATA_DIR: dataDir });
    servers.push(second);
    upstream.port = second.port;
    const again = await helloWire(h.rawSocket(wsUrl(second.url), token), ['echobot']);
    // Sent whether or not the bot is back yet: it waits in the bot's queue if not.
    expect((await ask(again, 'after-restart-1', '/ping')).text).toBe('pong');
    expect((await ask(again, 'after-restart-2', 'still there?')).text).toBe('You said: still there?');
    expect(bot.proc.exitCode).toBeNull();
    expect(bot.logs.some((l) => l.msg === 'connection lost, reconnecting')).toBe(true);

    // Every question got one answer (under one id, however often the wire carried it), and each its own.
    const answers = [...alice.frames, ...again.frames].filter((f): f is MessageFrame => f.t === Op.Message && f.from === 'echobot');
    expect(answered.size).toBe(5);
    expect(new Set(answers.map((m) => m.id))).toEqual(answered);

    const before = again.frames.length;
    bot.proc.kill('SIGINT');
    expect(await bot.exited).toBe(0);
    await again.next(Op.Presence, (p) => p.name === 'echobot' && !p.online && again.frames.indexOf(p) >= before);
    expect(bot.logs.map((l) => l.msg)).toContain('stopped');
    // Nothing the bot logged carries its password or its token.
    expect(JSON.stringify(bot.logs)).not.toContain(BOT_PASSWORD);
  });

  it('stops with exit code 1 and a coded reason when its password is wrong', async () => {
    const server = await startChild({ DATA_DIR: h.tempDir() });
    servers.push(server);
    await h.account(server, 'echobot', 'the real password');
    const bot = startBot(server.url);
    bots.push(bot);
    expect(await bot.exited).toBe(1);
    expect(bot.logs.find((l) => l.msg === 'bot failed')?.error).toMatch(/^BAD_CREDENTIALS: echobot exists/);
  });
});
