/** The settings of several nodes: NATS_URL, NODE_ID and the node link. Without NATS_URL nothing changes. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config.ts';

describe('config: several nodes', () => {
  it('with no NATS_URL there is no bus, and the node id is random per start', () => {
    const a = loadConfig({}, []);
    const b = loadConfig({}, []);
    expect(a.natsUrl).toBeUndefined();
    expect(a.nodeId).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    expect(a.nodeId).not.toBe(b.nodeId);
  });

  it('takes NATS_URL and NODE_ID from the environment or flags', () => {
    const c = loadConfig({ NATS_URL: 'nats://127.0.0.1:4222', NODE_ID: 'node-1' }, []);
    expect(c.natsUrl).toBe('nats://127.0.0.1:4222');
    expect(c.nodeId).toBe('node-1');
    expect(loadConfig({}, ['--nats-url', 'nats://a:1, tls://b:2', '--node-id=n_2'])).toMatchObject({ natsUrl: 'nats://a:1,tls://b:2', nodeId: 'n_2' });
    expect(loadConfig({ NATS_URL: 'nats://nats.internal' }, []).natsUrl).toBe('nats://nats.internal');
  });

  it('refuses a NATS_URL or NODE_ID that is not one, naming the setting', () => {
    for (const bad of ['127.0.0.1:4222', 'http://x:4222', 'nats://', 'nats://a b:1', 'nats://a:1,,nats://b:2', 'nats://a:1/path']) {
      expect(() => loadConfig({ NATS_URL: bad }, []), bad).toThrow(/NATS_URL must be/);
    }
    for (const bad of ['node.1', 'a b', 'x'.repeat(33), 'nöde', 'a*']) {
      expect(() => loadConfig({ NODE_ID: bad }, []), bad).toThrow(/NODE_ID must be/);
    }
  });

  it('takes NODE_LINK and NODE_LINK_ANNOUNCE as host:port, or off; loopback on any port by default', () => {
    expect(loadConfig({}, []).nodeLink).toEqual({ listen: { host: '127.0.0.1', port: 0 } });
    expect(loadConfig({ NODE_LINK: 'off' }, []).nodeLink).toBeUndefined();
    expect(loadConfig({ NODE_LINK: '10.0.0.5:7100' }, []).nodeLink).toEqual({ listen: { host: '10.0.0.5', port: 7100 } });
    expect(loadConfig({}, ['--node-link', '[::1]:0']).nodeLink).toEqual({ listen: { host: '::1', port: 0 } });
    expect(loadConfig({ NODE_LINK: '0.0.0.0:7100', NODE_LINK_ANNOUNCE: 'node-3.internal:7100' }, []).nodeLink)
      .toEqual({ listen: { host: '0.0.0.0', port: 7100 }, announce: { host: 'node-3.internal', port: 7100 } });
  });

  it('refuses a NODE_LINK or NODE_LINK_ANNOUNCE that other nodes could not dial, naming the setting', () => {
    for (const bad of ['7100', 'host', 'a:b', 'a:70000', '[nothex]:1', 'a b:1', ':7100']) {
      expect(() => loadConfig({ NODE_LINK: bad }, []), bad).toThrow(/NODE_LINK must be/);
    }
    expect(() => loadConfig({ NODE_LINK: '0.0.0.0:7100' }, [])).toThrow(/NODE_LINK on all interfaces needs NODE_LINK_ANNOUNCE/);
    for (const bad of ['a:0', '0.0.0.0:7100', 'x']) {
      expect(() => loadConfig({ NODE_LINK_ANNOUNCE: bad }, []), bad).toThrow(/NODE_LINK_ANNOUNCE must be/);
    }
    expect(() => loadConfig({ NODE_LINK: 'off', NODE_LINK_ANNOUNCE: 'a:1' }, [])).toThrow(/NODE_LINK_ANNOUNCE needs a NODE_LINK/);
  });
});
