/**
 * Runs the real server entry point (`server/main.ts`) as a child process, for tests that must kill it with
 * SIGKILL, send it SIGTERM, or measure its memory apart from the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  port: number;
  /** Log lines (parsed JSON) seen so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resident set size of the server process, in bytes (from /proc); 0 once it has exited. */
  rss(): number;
  /** What the process wrote to stderr so far (a crash's stack, for instance). */
  stderr(): string;
}

/** What any Node process needs from the environment to run at all; nothing that configures Parley. */
export function baseEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) {
    const value = process.env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * Starts `server/main.ts` with `env` on top of {@link baseEnv} and test defaults (port 0, cheap scrypt).
 * A test that wants MongoDB passes MONGODB_URI itself (from `Harness.storeEnv()`).
 */
export function startChild(env: Record<string, string>): Promise<ChildServer> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    // Only what the test means to give it: never the test runner's MONGODB_URI, DATA_DIR or other settings.
    env: { ...baseEnv(), PORT: '0', HOST: '127.0.0.1', SCRYPT_COST: '10', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'parley listening' && typeof entry.url === 'string') {
        const url = entry.url;
        resolve({
          proc, url, port: Number(new URL(url).port), logs, exited,
          rss: () => {
            // An exited (zombie) process has no VmRSS line, and a reaped one no /proc entry.
            let status = '';
            try {
              status = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
            } catch { /* gone */ }
            const m = /VmRSS:\s+(\d+) kB/.exec(status);
            return m ? Number(m[1]) * 1024 : 0;
          },
          stderr: () => stderr,
        });
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`server exited (${code ?? signal}) before listening: ${stderr}`)));
  });
}
