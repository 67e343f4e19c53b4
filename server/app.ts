/**
 * Wires one Parley server together from a config: store, accounts, hub, transport, housekeeping. Used by
 * `server/main.ts` (the process) and by integration tests (a real server on port 0 in the test process).
 */
import type { Config } from './config.ts';
import { Accounts } from './core/accounts.ts';
import { Hub } from './core/hub.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { LocalRouter } from './core/local-router.ts';
import type { Router } from './core/router.ts';
import type { Store } from './core/store.ts';
import { assertNativeUws, startTransport } from './transport/uws.ts';

export interface RunningServer {
  port: number;
  /** `http(s)://host:port` of this server. */
  url: string;
  hub: Hub;
  store: Store;
  /** The node's router: in-process with no NATS_URL, else on the NATS bus. */
  router: Router;
  /** Graceful stop: refuse new work, close sockets with GOING_AWAY, requeue in-flight messages, close the store. */
  stop(): Promise<void>;
}

export async function openStore(config: Readonly<Config>, log: Logger): Promise<Store> {
  if (config.mongodbUri) {
    const { MongoStore } = await import('./store/mongo.ts');
    return new MongoStore({ uri: config.mongodbUri, dbName: config.mongodbDb, retentionMs: config.retentionMs, logger: log.child({ store: 'mongodb' }) });
  }
  const { EmbeddedStore } = await import('./store/embedded.ts');
  return new EmbeddedStore({ dir: config.dataDir, logger: log.child({ store: 'embedded' }) });
}

/** The in-process router with no NATS_URL (one node, no bus); the NATS one otherwise. */
export async function openRouter(config: Readonly<Config>, log: Logger): Promise<Router> {
  if (!config.natsUrl) return new LocalRouter({ nodeId: config.nodeId });
  const { NatsRouter } = await import('./bus/nats-router.ts');
  return new NatsRouter({ url: config.natsUrl, nodeId: config.nodeId, link: config.nodeLink, logger: log.child({ bus: 'nats', node: config.nodeId }) });
}

export async function startServer(config: Readonly<Config>, opts: { log?: Logger; store?: Store } = {}): Promise<RunningServer> {
  assertNativeUws();
  const log = opts.log ?? createLogger(config.logLevel);
  const store = opts.store ?? (await openStore(config, log));
  await store.open();
  const router = await openRouter(config, log);
  const accounts = new Accounts(store, {
    sessionTtlMs: config.sessionTtlMs,
    scrypt: { N: 1 << config.scryptCost, r: 8, p: 1 },
    signinFailuresPerMinute: 10,
    signinFailureBurst: 10,
    registrationsPerMinute: config.registrationsPerMinute,
    registrationBurst: config.registrationsPerMinute,
  }, log);
  const hub = new Hub(store, accounts, {
    queueCap: config.queueCap,
    retentionMs: config.retentionMs,
    drainBatch: 100,
    helloTimeoutMs: 10_000,
    idleTimeoutMs: config.idleTimeoutMs,
    frameRate: config.frameRate,
    frameBurst: config.frameBurst,
    maxBadFrames: 100,
    dedupEntries: 100_000,
    rooms: { historyCount: config.roomHistory, memberLimit: config.roomMembers, severalNodes: config.natsUrl !== undefined },
    streams: {
      maxChunkBytes: config.maxChunkBytes,
      maxStreamsPerUser: config.maxStreamsPerUser,
      maxFileBytes: config.maxFileBytes,
      windowBytes: config.streamWindowBytes,
      maxTotalBytes: config.streamMemoryBytes,
      resumeMs: config.streamResumeMs,
    },
  }, log, router);
  try {
    await router.start(hub.receiver);
  } catch (err) {
    await hub.shutdown();
    await store.close();
    throw err;
  }
  let transport;
  try {
    transport = await startTransport({ config, hub, accounts, log, storeKind: store.kind, router });
  } catch (err) {
    await router.close();
    await store.close();
    throw err;
  }

  // Retention and expired sessions: hourly, and once shortly after start.
  const housekeeping = async (): Promise<void> => {
    try {
      const messages = await store.purgeExpiredMessages(Date.now() - config.retentionMs);
      const roomEntries = await store.rooms.purgeExpiredRoomEntries(Date.now() - config.retentionMs);
      const sessions = await store.purgeExpiredSessions(Date.now());
      if (messages || roomEntries || sessions) log.info({ messages, roomEntries, sessions }, 'expired data purged');
    } catch (err) {
      log.warn({ err }, 'housekeeping failed; will retry');
    }
  };
  const first = setTimeout(() => void housekeeping(), 5_000);
  const hourly = setInterval(() => void housekeeping(), 3_600_000);
  first.unref();
  hourly.unref();

  const scheme = config.tls ? 'https' : 'http';
  const url = `${scheme}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${transport.port}`;
  log.info({ url, store: store.kind, tls: !!config.tls, node: router.nodeId, bus: router.kind }, 'parley listening');

  let stopping: Promise<void> | undefined;
  return {
    port: transport.port,
    url,
    hub,
    store,
    router,
    stop: () => (stopping ??= (async () => {
      clearTimeout(first);
      clearInterval(hourly);
      transport.stopListening();
      await hub.shutdown();
      await router.close();
      await store.close();
      log.info({}, 'parley stopped');
    })()),
  };
}
