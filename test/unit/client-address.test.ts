/** The client address used for per-address limits: X-Forwarded-For only from a trusted proxy. */
import { describe, expect, it } from 'vitest';
import { clientAddress, normalizeAddress } from '../../server/transport/client-address.ts';
import { ConfigError, loadConfig } from '../../server/config.ts';

describe('client address', () => {
  const trusted = new Set(['127.0.0.1', '10.0.0.2']);

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    expect(clientAddress('203.0.113.9', '198.51.100.1', trusted)).toBe('203.0.113.9');
    expect(clientAddress('203.0.113.9', '198.51.100.1', new Set())).toBe('203.0.113.9');
  });

  it('from a trusted proxy, takes the right-most address that is not a trusted proxy', () => {
    expect(clientAddress('127.0.0.1', '198.51.100.1', trusted)).toBe('198.51.100.1');
    // The client wrote the left entry itself; the proxies appended the rest.
    expect(clientAddress('127.0.0.1', '1.2.3.4, 198.51.100.1, 10.0.0.2', trusted)).toBe('198.51.100.1');
    expect(clientAddress('::ffff:127.0.0.1', '198.51.100.7', trusted)).toBe('198.51.100.7');
  });

  it('falls back to the peer when the header is missing, malformed or all proxies', () => {
    expect(clientAddress('127.0.0.1', '', trusted)).toBe('127.0.0.1');
    expect(clientAddress('127.0.0.1', 'not-an-address', trusted)).toBe('127.0.0.1');
    expect(clientAddress('127.0.0.1', '10.0.0.2', trusted)).toBe('127.0.0.1');
  });

  it('normalises IPv4-mapped IPv6 peers', () => {
    expect(normalizeAddress('::FFFF:10.0.0.2')).toBe('10.0.0.2');
    expect(normalizeAddress('0000:0000:0000:0000:0000:ffff:7f00:0001')).toBe('127.0.0.1');
    expect(normalizeAddress('::ffff:c633:6401')).toBe('198.51.100.1');
    expect(normalizeAddress(' 2001:DB8::1 ')).toBe('2001:db8::1');
  });

  it('TRUSTED_PROXY takes IP addresses and refuses anything else', () => {
    expect(loadConfig({ TRUSTED_PROXY: '127.0.0.1, ::1' }, []).trustedProxies).toEqual(['127.0.0.1', '::1']);
    expect(loadConfig({}, []).trustedProxies).toEqual([]);
    expect(() => loadConfig({ TRUSTED_PROXY: 'nginx.local' }, [])).toThrow(ConfigError);
  });
});
