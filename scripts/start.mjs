/**
 * What `npm start` runs. Installs nothing: builds the browser client when client/dist is missing or older than
 * its sources, then runs the server (`node --import tsx server/main.ts`) with this script's arguments, passes
 * SIGINT / SIGTERM on to it, and exits with its exit code.
 *
 * When CLIENT_DIR (or --client-dir) points somewhere else, that directory is the operator's to build and
 * nothing is built here.
 */
import { spawn } from 'node:child_process';
import { SERVER_ENV, SERVER_NODE_FLAGS } from './server-flags.mjs';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildClient, CLIENT_SOURCES } from './build-client.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'client/dist');
const args = process.argv.slice(2);

/** Newest modification time of a file or of any file under a directory. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = 0;
  for (const name of readdirSync(path)) t = Math.max(t, newest(join(path, name)));
  return t;
}

function customClientDir() {
  if (process.env.CLIENT_DIR) return true;
  return args.some((a) => a === '--client-dir' || a.startsWith('--client-dir='));
}

async function main() {
  if (!customClientDir()) {
    const built = existsSync(join(DIST, 'app.js')) ? statSync(join(DIST, 'app.js')).mtimeMs : 0;
    const sources = Math.max(...CLIENT_SOURCES.map(newest));
    if (built === 0 || built < sources) {
      const started = Date.now();
      process.stderr.write(built === 0 ? 'parley: building the browser client…\n' : 'parley: client sources changed; rebuilding…\n');
      await buildClient({ outDir: DIST, quiet: true });
      process.stderr.write(`parley: client built in ${Date.now() - started} ms\n`);
    }
  }

  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, '--import', 'tsx', join(ROOT, 'server/main.ts'), ...args], { stdio: 'inherit', cwd: process.cwd(), env: { ...SERVER_ENV, ...process.env } });
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  process.on('SIGINT', () => forward('SIGINT'));
  process.on('SIGTERM', () => forward('SIGTERM'));
  child.on('error', (err) => {
    process.stderr.write(`parley: cannot run the server: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal so a supervisor sees what happened; fall back to the shell's 128+n convention.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(128), 1000).unref();
      return;
    }
    process.exit(code ?? 1);
  });
}

main().catch((err) => {
  process.stderr.write(`parley: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
