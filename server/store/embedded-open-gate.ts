/**
 * Keeps other processes' commits out of the moment this process opens an LMDB environment they share.
 *
 * Why: LMDB as lmdb-js 3.5 bundles it has the bug upstream fixed as ITS#9496. `mdb_env_open` reads the newest
 * meta page with pread, maps the file, then stores that meta's txn id into the lock file's shared "last
 * committed txn" field, unguarded, in every process that opens, not only the first. A commit by another
 * process between the read and the store is thereby forgotten: the next write transaction, in any process,
 * starts from the older meta and overwrites that commit. For the Store that is a message reported `queued`
 * and then lost, and its seq handed out again. Nothing in LMDB's API closes the window, so the adapter does.
 *
 * How, with files in `<env>/open-gate/` (Node has no advisory file locks) and a Dekker-style handshake:
 *
 * - An opener creates `opening.<pid>`, then waits until no other live process holds a `writer.<pid>` file,
 *   then opens, then removes its file.
 * - A process holds `writer.<pid>` from before it queues a write transaction until every write it queued has
 *   committed. Whenever it creates that file it then looks for `opening.*` of other live processes and, if
 *   there is one, removes its file again (it has nothing in flight) and waits. While it holds the file it
 *   keeps looking before each new write (once per event-loop turn), and holds new writes back while someone
 *   opens, so that what it has in flight drains and the opener gets in.
 *
 * Each side creates its own file before it looks for the other's, so at least one of them sees the other: an
 * open never overlaps a commit of another process. Openers never wait for each other (opens do not race each
 * other, only commits), writers never block the event loop (they wait asynchronously, before the transaction
 * is queued, so no LMDB lock is held while waiting), and everything a waiting opener waits for finishes on its
 * own. Files of processes that died are ignored and removed; the pid is in the name, not in the content, so a
 * file is complete the moment it exists. Within one process nothing is needed: lmdb-js opens an environment
 * once per process and shares it, so the pid's own files are ignored on both sides.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const OPENING = 'opening.';
const WRITER = 'writer.';
/** How often a waiting side looks again. */
const POLL_MS = 1;

/** Per gate directory, the writes this process has in flight (shared by every store instance in the process). */
const inFlight = new Map<string, number>();

export class OpenGate {
  readonly #dir: string;
  readonly #pid = process.pid;
  /** This process in file names: its pid and, where /proc tells it, its start time (see `processId`). */
  readonly #me = processId(process.pid);
  /** Writes that arrived while another process was opening, released in arrival order. */
  #held: Promise<void> | null = null;
  /** Whether another process's opening was looked for in this event-loop turn while the writer file was held. */
  #lookedThisTurn = false;

  /** `envDir` is the directory of the LMDB environment this gate guards. */
  constructor(envDir: string) {
    this.#dir = path.join(envDir, 'open-gate');
  }

  /**
   * Runs `open` (which opens the environment, synchronously) at a moment when no other process can commit to
   * it; waits for the writes other processes have in flight.
   */
  async opening<T>(open: () => T): Promise<T> {
    mkdirSync(this.#dir, { recursive: true });
    const mine = path.join(this.#dir, OPENING + this.#me);
    writeFileSync(mine, '');
    try {
      while (this.#others(WRITER)) await sleep(POLL_MS);
      return open();
    } finally {
      rmSync(mine, { force: true });
    }
  }

  /**
   * Call before queuing a write transaction, and `leave()` once it committed or failed. Returns nothing when
   * the write may be queued at once (so call order is kept exactly), or a promise while another process opens.
   */
  enter(): Promise<void> | undefined {
    if (this.#held || !this.#tryEnter()) return this.#queueBehind();
    return undefined;
  }

  /**
   * Runs `commit`, a synchronous write (lmdb-js's `openDB` commits when it creates a database), as a write:
   * never while another process opens.
   */
  async writing<T>(commit: () => T): Promise<T> {
    const entered = this.enter();
    if (entered) await entered;
    try {
      return commit();
    } finally {
      this.leave();
    }
  }

  leave(): void {
    const count = (inFlight.get(this.#dir) ?? 1) - 1;
    if (count > 0) {
      inFlight.set(this.#dir, count);
      return;
    }
    inFlight.delete(this.#dir);
    this.#dropWriterFile();
  }

  /**
   * Counts one more write in flight and returns true, or returns false while another process opens. With the
   * writer file already held it looks only once per event-loop turn, unless `look` says otherwise.
   */
  #tryEnter(look = false): boolean {
    const count = inFlight.get(this.#dir) ?? 0;
    if (count === 0) {
      mkdirSync(this.#dir, { recursive: true });
      writeFileSync(path.join(this.#dir, WRITER + this.#me), '');
      if (this.#others(OPENING)) {
        this.#dropWriterFile();
        return false;
      }
    } else if (look || !this.#lookedThisTurn) {
      if (!this.#lookedThisTurn) {
        this.#lookedThisTurn = true;
        setImmediate(() => {
          this.#lookedThisTurn = false;
        });
      }
      // Our file is held, so an opener waits for us anyway: this only stops new writes so that ours drain.
      if (this.#others(OPENING)) return false;
    }
    inFlight.set(this.#dir, count + 1);
    return true;
  }

  /** Waits until no other process opens, behind every write already waiting (writes keep their call order). */
  #queueBehind(): Promise<void> {
    const before = this.#held ?? Promise.resolve();
    const turn = before
      .catch(() => undefined)
      .then(async () => {
        // The first waiter sleeps until the opener is done; those behind it then go at once, in order.
        while (!this.#tryEnter(true)) await sleep(POLL_MS);
      });
    const held: Promise<void> = turn.finally(() => {
      if (this.#held === held) this.#held = null;
    });
    this.#held = held;
    return held;
  }

  #dropWriterFile(): void {
    rmSync(path.join(this.#dir, WRITER + this.#me), { force: true });
  }

  /** Whether a live process other than this one has a file of this kind; removes those of processes gone. */
  #others(kind: string): boolean {
    let names: string[];
    try {
      names = readdirSync(this.#dir);
    } catch {
      return false;
    }
    let found = false;
    for (const name of names) {
      if (!name.startsWith(kind)) continue;
      const [pidText, started = ''] = name.slice(kind.length).split('.');
      const pid = Number(pidText);
      if (!Number.isInteger(pid) || pid === this.#pid) continue;
      if (alive(pid) && started === startOf(pid)) found = true;
      else rmSync(path.join(this.#dir, name), { force: true }); // dead, or its pid reused by another process
    }
    return found;
  }
}

/**
 * `<pid>.<start>`: the start time (clock ticks since boot, /proc/<pid>/stat field 22) tells a live process from a
 * dead one whose pid was reused since (after a reboot, or by another program), which would otherwise hold the
 * gate shut for good. Empty where there is no /proc (then the pid alone is checked).
 */
function processId(pid: number): string {
  return `${pid}.${startOf(pid)}`;
}

function startOf(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, start time 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
