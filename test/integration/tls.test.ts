import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../support/harness.ts';

const h = new Harness();
afterEach(() => h.cleanup());

describe('HTTPS and WSS', () => {
  it('serves HTTPS with a self-signed certificate from scripts/make-cert.sh; clients chat over WSS', async () => {
    const dir = h.tempDir();
    execFileSync('bash', ['scripts/make-cert.sh', join(dir, 'certs')], { stdio: 'ignore' });
    const server = await h.server({ TLS_CERT: join(dir, 'certs/cert.pem'), TLS_KEY: join(dir, 'certs/key.pem') });
    expect(server.url).toMatch(/^https:\/\//);
    const alice = h.client(server, await h.account(server, 'alice'));
    const bob = h.client(server, await h.account(server, 'bob'));
    await Promise.all([alice.connect(), bob.connect()]);
    const got = bob.once('message');
    const id = alice.send('bob', 'over tls');
    expect((await got).text).toBe('over tls');
    await alice.once('receipt', (r) => r.id === id && r.state === 'delivered');
    // The session cookie is Secure under HTTPS.
    const { insecureFetch } = await import('../support/harness.ts');
    const res = await insecureFetch(server.url)(`${server.url}/api/signin`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'alice', password: 'correct horse battery' }) });
    expect(res.headers.get('set-cookie')).toContain('Secure');
  });

  it('refuses to start with a missing certificate file, saying so', async () => {
    await expect(h.server({ TLS_CERT: '/nonexistent/cert.pem', TLS_KEY: '/nonexistent/key.pem' })).rejects.toThrow(/TLS_CERT file not found/);
  });
});
