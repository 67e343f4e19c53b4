/**
 * A Parley node and its bus at start-up: no NATS_URL means the in-process router and nothing else to run; a
 * NATS_URL joins the node to a real nats-server under its NODE_ID; an unreachable or malformed one stops start-up
 * with a clear message. (Cross-node delivery through the hub is the next step; see docs/architecture.md.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, until } from '../support/harness.ts';
import { startNatsServer, type NatsServer } from '../support/nats-server.ts';
import { freePort, runMain } from '../support/processes.ts';

const h = new Harness();
let nats: NatsServer | undefined;
afterEach(async () => {
  await h.cleanup();
  await nats?.close();
  nats = undefined;
});

async function health(url: string): Promise<{ status: string; node: string; bus: Record<string, unknown> }> {
  return (await (await fetch(`${url}/healthz`)).json()) as { status: string; node: string; bus: Record<string, unknown> };
}

const run = (env: Record<string, string>) => runMain({ DATA_DIR: h.tempDir(), ...env });

describe('a node and its bus', () => {
  it('with no NATS_URL runs the in-process router under a random node id', async () => {
    const a = await h.server();
    const b = await h.server();
    expect(a.router.kind).toBe('in-process');
    expect(a.router.health()).toEqual({ up: true });
    expect(a.router.nodeId).not.toBe(b.router.nodeId);
    expect(await health(a.url)).toMatchObject({ node: a.router.nodeId, bus: { kind: 'in-process', up: true } });
  });

  it('with NATS_URL joins the bus as NODE_ID, and leaves it on stop', async () => {
    nats = await startNatsServer();
    const a = await h.server({ NATS_URL: nats.url, NODE_ID: 'node-a' });
    const b = await h.server({ NATS_URL: nats.url, NODE_ID: 'node-b' });
    expect(a.router).toMatchObject({ kind: 'nats', nodeId: 'node-a' });
    expect(a.router.health()).toEqual({ up: true });
    const claim = await a.router.claim('bob', 'sid-1', 1);
    expect(await b.router.locate('bob')).toEqual(claim);
    expect(await health(b.url)).toMatchObject({ status: 'ok', node: 'node-b', bus: { kind: 'nats', up: true } });
    await a.stop();
    expect(await b.router.locate('bob')).toBeNull();
    expect(a.router.health().up).toBe(false);
  });

  it('shows the bus state in /healthz, down with a reason while NATS is away', async () => {
    nats = await startNatsServer();
    const a = await h.server({ NATS_URL: nats.url, NODE_ID: 'node-a' });
    await nats.kill();
    await until(() => !a.router.health().up, 'bus down');
    expect(await health(a.url)).toMatchObject({ node: 'node-a', bus: { kind: 'nats', up: false, reason: expect.stringContaining('disconnected') } });
    await nats.restart();
    await until(() => a.router.health().up, 'bus up again');
    expect((await health(a.url)).bus).toEqual({ kind: 'nats', up: true });
  });

  it('stops start-up with a clear message when NATS cannot be reached', async () => {
    const port = await freePort(); // nothing listens there
    const { code, out } = await run({ NATS_URL: `nats://127.0.0.1:${port}` });
    expect(code).toBe(1);
    expect(out).toMatch(new RegExp(`cannot start: cannot reach NATS at nats://127\\.0\\.0\\.1:${port}`));
  });

  it('stops start-up with exit code 2 on a malformed NATS_URL or NODE_ID', async () => {
    expect(await run({ NATS_URL: 'localhost:4222' })).toMatchObject({ code: 2, out: expect.stringMatching(/configuration error: NATS_URL must be/) });
    expect(await run({ NODE_ID: 'a.b' })).toMatchObject({ code: 2, out: expect.stringMatching(/configuration error: NODE_ID must be/) });
  });
});
