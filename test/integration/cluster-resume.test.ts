/**
 * Resumable transfers across nodes: two node processes (server/main.ts) on one real nats-server and the shared
 * stand-in store. The sender is on node 1 and the recipient on node 2; one party's socket drops mid-transfer and
 * its client reconnects, on the other node or the same one. The transfer pauses on both sides, resumes from what
 * the recipient has, and the file arrives byte for byte, the sender writing at most the file plus one window.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { ParleyClient } from '../../client/sdk/client.ts';
import { Streams, type IncomingStream } from '../../client/sdk/streams.ts';
import type { WebSocketLike } from '../../client/sdk/client.ts';
import { startChild, type ChildServer } from '../support/child.ts';
import { Harness, wsUrl } from '../support/harness.ts';
import { startNatsServer, type NatsServer } from '../support/nats-server.ts';

const h = new Harness('mongodb');
let nats: NatsServer | undefined;
let nodes: ChildServer[] = [];

const KiB = 1024;
const MiB = 1024 * KiB;
const WINDOW = 512 * KiB;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function twoNodes(): Promise<[ChildServer, ChildServer]> {
  nats = await startNatsServer();
  const storeEnv = await h.storeEnv();
  const started: ChildServer[] = [];
  await Promise.all(['r1', 'r2'].map(async (id, i) => {
    const child = await startChild({ ...storeEnv, NATS_URL: nats!.url, NODE_ID: id, DATA_DIR: h.tempDir(), STREAM_WINDOW_KB: String(WINDOW / KiB) });
    started[i] = child;
    nodes.push(child);
  }));
  nodes = started;
  return started as [ChildServer, ChildServer];
}

afterEach(async () => {
  for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
  nodes = [];
  await h.cleanup();
  await nats?.close();
  nats = undefined;
});

/** A client whose every (re)connection goes to `target.node`: moving it moves the next reconnection. */
function mover(token: string, node: ChildServer) {
  const target = { node, ws: undefined as unknown as ReturnType<Harness['rawSocket']> };
  const client = h.client(node, token, {
    connect: () => {
      target.ws = h.rawSocket(wsUrl(target.node.url), token);
      return target.ws as unknown as WebSocketLike;
    },
  });
  return { client, target };
}

function collect(inc: IncomingStream, file: Uint8Array): Promise<void> {
  return (async () => {
    for await (const { offset, bytes } of inc.pieces()) file.set(bytes, offset);
  })();
}

function waitOpen(c: ParleyClient): Promise<unknown> {
  return c.state === 'open' ? Promise.resolve() : c.once('state', (s) => s.to === 'open');
}

describe('a transfer between two nodes, cut and resumed', () => {
  for (const [who, backOn] of [['recipient', 0], ['recipient', 1], ['sender', 1], ['sender', 0]] as const) {
    it(`the ${who}'s socket drops and it comes back on node ${backOn + 1}: the transfer resumes and the file arrives exactly`, async () => {
      const [n1, n2] = await twoNodes();
      const alice = mover(await h.account(n1, 'alice'), n1);
      const bob = mover(await h.account(n1, 'bob'), n2);
      await alice.client.connect();
      await bob.client.connect();
      const as = new Streams(alice.client);
      const bs = new Streams(bob.client);

      const size = 8 * MiB + 4321;
      const file = randomBytes(size);
      const got = new Uint8Array(size);
      const offered = bs.once('offer');
      const out = as.sendFile('bob', { ranges: [[0, size]], read: async (a, b) => file.subarray(a, b) },
        { name: 'film.bin', size, mime: 'application/octet-stream', container: 'other' });
      const inc = await offered;
      inc.accept(WINDOW, { adaptive: false });
      const filled = collect(inc, got);
      await inc.once('progress', (p) => p.bytes >= 2 * MiB);

      const outPaused = out.once('paused');
      const incPaused = inc.once('paused');
      const cut = who === 'recipient' ? bob : alice;
      cut.target.node = nodes[backOn]!;
      cut.target.ws.terminate(); // its client reconnects by itself, to `backOn`
      const [po, pi] = await Promise.all([outPaused, incPaused]);
      expect(who === 'recipient' ? po.why.reason : pi.why.reason).toBe(who === 'recipient' ? 'RECIPIENT_DISCONNECTED' : 'SENDER_DISCONNECTED');
      const heldAtCut = inc.have.total;
      expect(heldAtCut).toBeGreaterThan(0);
      expect(heldAtCut).toBeLessThan(size);

      const resumed = out.once('resumed');
      await waitOpen(cut.client);
      expect((await resumed).held).toBeGreaterThanOrEqual(heldAtCut);
      await filled;
      expect(await out.done).toEqual({ bytes: size });
      expect(sha(got)).toBe(sha(file));
      expect(out.written).toBeLessThanOrEqual(size + WINDOW);
    });
  }
});
