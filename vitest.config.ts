import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Servers, child processes and browsers: real I/O needs more than the 5 s default.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: more parallel files only make timing-sensitive tests (memory, latency) noisier.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
