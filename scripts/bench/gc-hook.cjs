/**
 * Preloaded (`--require`) into every server process of the benchmark's idle section, Parley and the bare relay
 * alike, together with --expose-gc: SIGUSR2 runs a full garbage collection and prints the JS heap then in use
 * as one JSON line on stdout (`{"gcHeapUsed":N}`). The bench reads memory after one at every step, so it counts
 * what idle connections keep rather than the garbage of opening them. Never loaded by `npm start`.
 */
'use strict';
process.on('SIGUSR2', () => {
  if (typeof global.gc !== 'function') return;
  global.gc();
  process.stdout.write(JSON.stringify({ gcHeapUsed: process.memoryUsage().heapUsed }) + '\n');
});
