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

/**
 * One small object per logger: children share the methods through the prototype, so a child per connection
 * costs a few fields, not a set of closures (tens of thousands of connections each hold one).
 */
class JsonLogger implements Logger {
  constructor(
    private readonly min: number,
    private readonly level: LogLevel,
    private readonly write: (line: string) => void,
    private readonly base: LogFields,
  ) {}

  private emit(lvl: Exclude<LogLevel, 'silent'>, fields: LogFields, msg: string): void {
    if (RANK[lvl] < this.min) return;
    this.write(JSON.stringify({ level: lvl, time: new Date().toISOString(), msg, ...this.base, ...redact(fields) }));
  }

  debug(fields: LogFields, msg: string): void { this.emit('debug', fields, msg); }
  info(fields: LogFields, msg: string): void { this.emit('info', fields, msg); }
  warn(fields: LogFields, msg: string): void { this.emit('warn', fields, msg); }
  error(fields: LogFields, msg: string): void { this.emit('error', fields, msg); }

  child(fields: LogFields): Logger {
    return new JsonLogger(this.min, this.level, this.write, { ...this.base, ...redact(fields) });
  }
}

export function createLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stdout.write(line + '\n'),
  base: LogFields = {},
): Logger {
  return new JsonLogger(RANK[level], level, write, base);
}
