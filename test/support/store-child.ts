/**
 * A second Parley-like process over one store, for the contract's cross-process cases: it opens its own
 * adapter (named by `PARLEY_STORE`, JSON `{ module, className, options }`) and does one job.
 *
 *   node --import tsx test/support/store-child.ts open <to> <fromKey>
 *     opens, enqueues one message, closes; prints {"opened":true,"seq":n}
 *   node --import tsx test/support/store-child.ts enqueue <to> <fromKey> <count>
 *     enqueues <count> messages one after another; prints one line per message {"id","status","seq","start","end"}
 *     with start and end on the machine's monotonic clock (ms, sub-millisecond precision)
 *
 * Exits 0 after closing the store; any failure goes to stderr with exit code 1.
 */
import type { Store } from '../../server/core/store.ts';

/** What a contract fixture hands a child so it can open its own store over the same data. */
export interface ProcessStoreSpec {
  /** file:// URL of the adapter module. */
  module: string;
  /** Exported class; constructed with `options`. */
  className: string;
  options: Record<string, unknown>;
}

const spec = JSON.parse(process.env.PARLEY_STORE ?? 'null') as ProcessStoreSpec | null;
if (spec === null) {
  process.stderr.write('store-child: PARLEY_STORE is not set\n');
  process.exit(2);
}
const [job, to = 'bob', fromKey = 'child', countArg = '1'] = process.argv.slice(2);
const mod = (await import(spec.module)) as Record<string, new (options: unknown) => Store>;
const Adapter = mod[spec.className];
if (Adapter === undefined) throw new Error(`store-child: ${spec.module} has no export ${spec.className}`);
const store = new Adapter(spec.options);
await store.open();
// The system-wide monotonic clock, which every process reads alike: `performance.timeOrigin + now()` carries a
// per-process offset from start-up (up to ~13 ms seen under load), which made one process's enqueue appear to
// start after another's ended when it had not.
const now = (): number => Number(process.hrtime.bigint()) / 1e6;
if (job === 'open') {
  const result = await store.enqueue({ to, from: fromKey, fromKey, id: `${fromKey}-open`, text: 'opened', ts: Date.now() }, 1e6);
  process.stdout.write(JSON.stringify({ opened: true, ...result }) + '\n');
} else if (job === 'enqueue') {
  for (let i = 0; i < Number(countArg); i++) {
    const id = `${fromKey}-${i}`;
    const start = now();
    const result = await store.enqueue({ to, from: fromKey, fromKey, id, text: `m${i}`, ts: Date.now() }, 1e6);
    process.stdout.write(JSON.stringify({ id, start, end: now(), ...result }) + '\n');
  }
} else {
  throw new Error(`store-child: unknown job ${String(job)}`);
}
await store.close();
