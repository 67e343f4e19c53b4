/**
 * The Parley process: read config, start, and stop gracefully on SIGTERM / SIGINT (exit 0), or exit 1 with
 * a clear message when start-up fails.
 */
import { startServer } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './core/logger.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`parley: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let server;
  try {
    server = await startServer(config, { log });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error({}, `start-up failed: ${message}`);
    process.stderr.write(`parley: cannot start: ${message}\n`);
    process.exit(1);
  }
  const running = server;
  let signalled = false;
  const stop = (signal: string): void => {
    if (signalled) return;
    signalled = true;
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}

void main();
