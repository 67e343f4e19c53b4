/**
 * A separate process for the embedded store's crash and multi-process tests.
 *
 * Usage: node --import tsx test/support/embedded-enqueue-child.ts <dir> <to> <fromKey> <inFlight> [count]
 *
 * Opens an EmbeddedStore on <dir> and keeps <inFlight> enqueues to <to> outstanding at all times, so a kill
 * lands while transactions are being committed and flushed. Each time an enqueue resolves it prints one JSON
 * line `{"id","seq","status"}` to stdout; stdout to a pipe is synchronous on Linux, so a line the parent has
 * read was written after the promise resolved. Without [count] it runs until killed; with it, it enqueues
 * that many messages, closes the store and exits 0.
 */
import { EmbeddedStore } from '../../server/store/embedded.ts';

const [dirArg, toArg, fromKeyArg, inFlightArg, countArg] = process.argv.slice(2);
if (!dirArg || !toArg || !fromKeyArg || !inFlightArg) {
  process.stderr.write('usage: embedded-enqueue-child.ts <dir> <to> <fromKey> <inFlight> [count]\n');
  process.exit(2);
}
const dir: string = dirArg;
const to: string = toArg;
const fromKey: string = fromKeyArg;
const inFlight = Number(inFlightArg);
const count = countArg === undefined ? Infinity : Number(countArg);

const store = new EmbeddedStore({ dir });
await store.open();

let next = 0;
async function sender(): Promise<void> {
  while (next < count) {
    const n = next++;
    const id = `${fromKey}-${n.toString().padStart(7, '0')}`;
    const result = await store.enqueue(
      { to, from: fromKey, fromKey, id, text: `message ${n} from ${fromKey}`, ts: Date.now() },
      1_000_000,
    );
    process.stdout.write(JSON.stringify({ id, ...result }) + '\n');
  }
}

await Promise.all(Array.from({ length: inFlight }, sender));
await store.close();
