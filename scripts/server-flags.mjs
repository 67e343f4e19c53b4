/**
 * V8 flags the Parley server process runs with, shared by `npm start` (scripts/start.mjs) and the benchmark so
 * that what is measured is what operators run.
 *
 * --max-semi-space-size: the young generation otherwise grows to 16 MiB per semi-space under the churn of
 * sign-ins and message handling and stays there; capping it keeps resident memory close to what is live, which
 * matters with tens of thousands of idle connections. Short-lived garbage is just as cheap to collect in a
 * small young generation (a scavenge costs what survives, not what died).
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=2'];

/**
 * Environment the Parley server process runs with, under whatever the operator's environment sets (which wins).
 *
 * MALLOC_ARENA_MAX: glibc gives threads their own malloc arenas (up to 8 per core). V8's garbage-collector
 * threads allocate and free their work lists there, and the freed memory stays resident per arena; with tens
 * of thousands of idle connections that was about 300 bytes per connection here, for no gain on 2 cores.
 * Two arenas keep it close to what is live (glibc only; other C libraries ignore the variable).
 */
export const SERVER_ENV = { MALLOC_ARENA_MAX: '2' };
