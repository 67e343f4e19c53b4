import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config.ts';
import { KeyedLimiter, TokenBucket } from '../../server/core/ratelimit.ts';
import { RecentMap } from '../../server/core/recent.ts';
import { hashPassword, verifyPassword } from '../../server/core/passwords.ts';
import { nameKey, normalizeName } from '../../shared/names.ts';

describe('names', () => {
  it('accepts letters of any script, digits and ._-; normalises NFKC; keys ignore case', () => {
    for (const n of ['bob', '小明', 'Zoë', 'अनीता', 'user.name_1-x', '٣٤']) expect(normalizeName(n)).toBe(n.normalize('NFKC'));
    expect(normalizeName('Ｂｏｂ')).toBe('Bob');
    expect(nameKey(normalizeName('BOB')!)).toBe(nameKey(normalizeName('bob')!));
    expect(nameKey(normalizeName('Ｂｏｂ')!)).toBe('bob');
  });

  it('refuses empty, long, spaced, symbol-laden or punctuation-first names', () => {
    for (const n of ['', ' ', 'a b', 'a'.repeat(33), '.bob', '-bob', 'bob!', '<b>', 'a\u0000b', 7, null]) expect(normalizeName(n)).toBeNull();
    expect(normalizeName('a'.repeat(32))).toBe('a'.repeat(32));
  });
});

describe('config', () => {
  it('defaults serve on localhost with the embedded store', () => {
    const c = loadConfig({}, []);
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, mongodbUri: undefined, tls: undefined, queueCap: 10_000 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('flags override the environment', () => {
    expect(loadConfig({ PORT: '9000' }, ['--port', '9100']).port).toBe(9100);
    expect(loadConfig({}, ['--queue-cap=5']).queueCap).toBe(5);
  });

  it('fails with a clear message on nonsense', () => {
    expect(() => loadConfig({ PORT: 'eighty' }, [])).toThrow(/PORT must be a whole number/);
    expect(() => loadConfig({ PORT: '70000' }, [])).toThrow(/PORT/);
    expect(() => loadConfig({ TLS_CERT: 'x.pem' }, [])).toThrow(/TLS_CERT and TLS_KEY must be set together/);
    expect(() => loadConfig({ MONGODB_URI: 'postgres://x' }, [])).toThrow(/MONGODB_URI/);
    expect(() => loadConfig({ LOG_LEVEL: 'loud' }, [])).toThrow(/LOG_LEVEL/);
    expect(() => loadConfig({ ALLOWED_ORIGINS: 'example.org' }, [])).toThrow(/not an origin/);
    expect(() => loadConfig({}, ['--nope', '1'])).toThrow(/unknown option --nope/);
  });
});

describe('rate limits', () => {
  it('a bucket allows the burst, then the sustained rate', () => {
    const b = new TokenBucket(10, 5, 0);
    expect(Array.from({ length: 6 }, () => b.take(0))).toEqual([true, true, true, true, true, false]);
    expect(b.take(100)).toBe(true); // 100 ms at 10/s = 1 token
    expect(b.take(100)).toBe(false);
  });

  it('keyed limiters forget the oldest keys beyond their bound', () => {
    const l = new KeyedLimiter(1, 1, 4);
    expect(l.take('a', 0)).toBe(true);
    expect(l.take('a', 0)).toBe(false);
    for (const k of ['b', 'c', 'd', 'e']) l.take(k, 0); // two generations of two: a is gone
    expect(l.peek('a', 0)).toBe(true);
    expect(l.peek('e', 0)).toBe(false);
  });

  it('RecentMap keeps between half and all of its capacity, most recent first', () => {
    const m = new RecentMap<number, number>(1000);
    for (let i = 0; i < 100_000; i++) m.set(i, i);
    expect(m.get(99_999)).toBe(99_999);
    expect(m.get(99_500)).toBe(99_500);
    expect(m.get(98_000)).toBeUndefined();
    m.delete(99_999);
    expect(m.get(99_999)).toBeUndefined();
  });
});

describe('passwords', () => {
  it('scrypt hashes verify, and carry their cost parameters', async () => {
    const h = await hashPassword('correct horse', { N: 1024, r: 8, p: 1 });
    expect(h).toMatch(/^scrypt\$1024\$8\$1\$/);
    expect(await verifyPassword('correct horse', h)).toBe(true);
    expect(await verifyPassword('wrong horse', h)).toBe(false);
    expect(await verifyPassword('x', 'garbage')).toBe(false);
  });
});
