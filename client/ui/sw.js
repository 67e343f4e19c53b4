/*
 * Parley's service worker: keeps the app shell (the page and its content-named files) so the page opens
 * without the server, to the history in IndexedDB. The build (scripts/build-client.mjs) prepends
 * `const SHELL = [...]` and `const VERSION = '...'`: the files of that build, and a name for its cache.
 * Served from the root with `Cache-Control: no-cache`, so a new build's worker is found at the next load.
 * The page: network first (a deploy is picked up at once), the kept copy when the server cannot be reached.
 * Content-named files: the kept copy (they never change). Everything else (/api, /ws, files) is not touched.
 */
/* global SHELL, VERSION */
const CACHE = `parley-shell-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(['/', ...SHELL])).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('parley-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === 'navigate') {
    event.respondWith(fetch(req).catch(() => caches.open(CACHE).then((c) => c.match('/')).then((r) => r ?? Response.error())));
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.open(CACHE).then((c) => c.match(url.pathname)).then((r) => r ?? fetch(req)));
  }
});
