/**
 * Relay load: S concurrent streams of `bytes` each, 256 KiB chunks, with the same end-to-end credit loop against
 * Parley (server-checked chunks and credit; the offer is answered before the clock starts) and the bare relay
 * (which forwards chunks and credit frames blindly). The senders run in one generator process and the viewers in another (scripts/bench/relay-gen.ts),
 * so neither is the other's ceiling. Reports end-to-end MiB/s, the server's RSS before and at its peak, its CPU,
 * and the busier generator's.
 */
import { cpuSeconds, forkGenerator, rssBytes, stopGenerators } from './lib.ts';
import type { RelayJob, RelaySideReport } from './relay-gen.ts';
import type { Target } from './text.ts';

export interface RelayResult {
  mibPerSec: number; rssBefore: number; peakRss: number; serverCpu: number; generatorCpu: number;
  /** ms from the first credit until every stream's first chunk byte reached its viewer. */
  firstMs: number;
}

const GEN_ENTRY = new URL('./relay-gen.ts', import.meta.url).pathname;

export async function runRelay(t: Target, streams: number, bytesEach: number): Promise<RelayResult> {
  const job = (role: RelayJob['role']): RelayJob => ({
    role, streams, bytesEach, target: { kind: t.kind, port: t.port, pid: t.pid, tokens: t.tokens && [...t.tokens] },
  });
  // Viewers first: an offer needs its recipient online.
  const viewers = forkGenerator(GEN_ENTRY, job('viewer'), 'relay viewers');
  const gens = [viewers];
  try {
    await viewers.ready;
    const senders = forkGenerator(GEN_ENTRY, job('sender'), 'relay senders');
    gens.push(senders);
    await senders.ready;
    const rssBefore = rssBytes(t.pid);
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(t.pid))), 20);
    const cpu0 = cpuSeconds(t.pid);
    const t0 = performance.now();
    const done = viewers.next<RelaySideReport & { done: true }>();
    senders.proc.send({ cmd: 'go' }); // the senders only start their CPU clock: they send once credit comes
    viewers.proc.send({ cmd: 'go' });
    const seen = await done;
    const elapsed = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    peakRss = Math.max(peakRss, rssBytes(t.pid));
    const serverCpu = (cpuSeconds(t.pid) - cpu0) / elapsed;
    const sent = senders.next<RelaySideReport>();
    senders.proc.send({ cmd: 'stop' });
    const sending = await sent;
    return {
      mibPerSec: (streams * bytesEach) / 1024 / 1024 / elapsed,
      rssBefore, peakRss, serverCpu, firstMs: seen.firstMs ?? 0,
      generatorCpu: Math.max(seen.cpu / seen.elapsed, sending.cpu / sending.elapsed),
    };
  } finally {
    stopGenerators(gens);
  }
}
