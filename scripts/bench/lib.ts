/** Shared helpers of the benchmark: child servers, /proc readings, percentiles, table printing. */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface Child {
  proc: ChildProcess;
  port: number;
  pid: number;
  /** JS heap in use after the last GC the bench asked for (scripts/bench/gc-hook.cjs), when it printed one. */
  gcHeapUsed?: number;
}

const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * Starts `entry` (a tsx entry) and resolves once it prints a JSON line with `port` or a Parley `url`.
 * `nodeArgs` go on node's command line (for flags NODE_OPTIONS refuses, such as `--cpu-prof`).
 */
export function startChild(entry: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Child> {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', entry], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let child: Child | undefined;
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        const o = JSON.parse(line) as { port?: number; url?: string; msg?: string; gcHeapUsed?: number };
        if (child && typeof o.gcHeapUsed === 'number') child.gcHeapUsed = o.gcHeapUsed;
        const port = o.port ?? (o.url ? Number(new URL(o.url).port) : undefined);
        if (port && !child) resolve((child = { proc, port, pid: proc.pid! }));
      } catch { /* not JSON */ }
    });
    proc.on('exit', (code) => reject(new Error(`${entry} exited with ${code} before listening`)));
  });
}

/** How long a child may take to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 15_000;

/**
 * Stops a child with SIGTERM, so a server shuts down as operators' do and a `--cpu-prof` profile gets written;
 * SIGKILL only if it has not exited after STOP_GRACE_MS.
 */
export async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

export function rssBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** Resident memory split into anonymous memory (heap, malloc) and mapped files (shared libraries, LMDB's file). */
export function memoryOf(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz on Linux)
}

export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function table(title: string, head: string[], rows: Array<Array<string | number>>): void {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  process.stdout.write(`\n${title}\n`);
  for (const [n, r] of cells.entries()) {
    process.stdout.write('  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ') + '\n');
    if (n === 0) process.stdout.write('  ' + widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A load-generator process: send it a job, then commands; `next()` is its next IPC message (or its failure). */
export interface Generator {
  proc: ChildProcess;
  next<T>(): Promise<T>;
  /** Resolves with the generator's first message (its `{ ready: true }`). */
  ready: Promise<unknown>;
  /** Rejects when the process exits; `stopGenerators` silences it. */
  failed: Promise<never>;
}

/** Forks the tsx entry `entry` as a generator and hands it `job`. `what` names it in errors. */
export function forkGenerator(entry: string, job: unknown, what: string): Generator {
  const proc = fork(entry, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const failed = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`${what} exited with ${code}`))));
  const next = <T>(): Promise<T> => Promise.race([new Promise<T>((r) => proc.once('message', (m) => r(m as T))), failed]);
  const ready = next<{ ready: true }>();
  proc.send(job as object);
  return { proc, next, ready, failed };
}

/** Ends generators that are still running (after their report, or after a failure). */
export function stopGenerators(gens: Generator[]): void {
  for (const g of gens) {
    g.failed.catch(() => {});
    if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGTERM');
  }
}
