import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { baseEnv } from '../support/child.ts';
import { Harness } from '../support/harness.ts';

const h = new Harness();
afterEach(() => h.cleanup());

/** Runs server/main.ts to completion and returns its exit code and output. */
function run(env: Record<string, string>, args: string[] = []): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    // Only what the test gives: under MONGODB_URI the server would otherwise ignore DATA_DIR and start.
    env: { ...baseEnv(), PORT: '0', LOG_LEVEL: 'info', DATA_DIR: h.tempDir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => proc.on('exit', (code) => resolve({ code, out })));
}

describe('start-up', () => {
  it('refuses to run on the slow fallback when the uWebSockets.js binary did not load', async () => {
    const { code, out } = await run({ UWS_USE_FALLBACK: '1' });
    expect(code).toBe(1);
    expect(out).toMatch(/uWebSockets\.js did not load its native binary/);
  });

  it('stops with a clear message and exit code 2 on bad configuration', async () => {
    const bad = await run({ PORT: 'http' });
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/configuration error: PORT must be a whole number/);
    const flag = await run({}, ['--colour', 'blue']);
    expect(flag.code).toBe(2);
    expect(flag.out).toMatch(/unknown option --colour/);
  });

  it('says so when the data directory cannot be used', async () => {
    const { code, out } = await run({ DATA_DIR: '/proc/version/parley' });
    expect(code).toBe(1);
    expect(out).toMatch(/cannot start: .*\/proc\/version\/parley/);
  });

  it('says so when the port is taken', async () => {
    const first = await h.server();
    const { code, out } = await run({ PORT: String(first.port), HOST: '127.0.0.1' });
    expect(code).toBe(1);
    expect(out).toMatch(/cannot listen on 127\.0\.0\.1:\d+/);
  });
});
