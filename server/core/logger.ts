/**
 * Structured logging: one JSON object per line. The core receives a Logger and derives children that carry
 * fields (user, connection id). Callers never log secrets: passwords and tokens are not passed in, and the
 * `redact` pass below is a second line of defence for field names that look secret.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
const SECRET_KEY = /pass|token|secret|cookie|authorization/i;

function redact(fields: LogFields): LogFields {
  let out: LogFields | undefined;
  for (const k of Object.keys(fields)) {
    if (SECRET_KEY.test(k)) (out ??= { ...fields })[k] = '[redacted]';
    const v = fields[k];
    if (v instanceof Error) (out ??= { ...fields })[k] = { name: v.name, message: v.message, code: (v as { code?: unknown }).code };
  }
  return out ?? fields;
}

export function createLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stdout.write(line + '\n'),
  base: LogFields = {},
): Logger {
  const min = RANK[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>, fields: LogFields, msg: string): void => {
    if (RANK[lvl] < min) return;
    write(JSON.stringify({ level: lvl, time: new Date().toISOString(), msg, ...base, ...redact(fields) }));
  };
  return {
    debug: (f, m) => emit('debug', f, m),
    info: (f, m) => emit('info', f, m),
    warn: (f, m) => emit('warn', f, m),
    error: (f, m) => emit('error', f, m),
    child: (fields) => createLogger(level, write, { ...base, ...redact(fields) }),
  };
}

/** A logger that drops everything, for unit tests that do not look at logs. */
export const silentLogger: Logger = createLogger('silent');
