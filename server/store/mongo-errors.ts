/**
 * How the MongoDB adapter reads driver errors and connection strings. Nothing here relies on the details a
 * server attaches to an error beyond its class and numeric code: wire-compatible servers (FerretDB) leave out
 * `keyPattern` / `keyValue` on duplicate keys and word their messages differently.
 */
import {
  MongoClientClosedError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from 'mongodb';

/** Server error codes that mean "this server cannot serve right now", not "your request is wrong". */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** True for errors that mean the server cannot be reached or cannot serve now (as opposed to a bad request). */
export function isUnavailable(error: unknown): boolean {
  if (
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNetworkError ||
    error instanceof MongoOperationTimeoutError ||
    error instanceof MongoNotConnectedError ||
    error instanceof MongoTopologyClosedError ||
    error instanceof MongoClientClosedError
  ) {
    return true;
  }
  return error instanceof MongoServerError && typeof error.code === 'number' && UNAVAILABLE_CODES.has(error.code);
}

/**
 * A unique index refused the write. Code 11000 alone: which index it was is found out by reading, never from
 * the error's `keyPattern`, `keyValue` or message.
 */
export function isDuplicateKey(error: unknown): boolean {
  return error instanceof MongoServerError && error.code === 11000;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The URI without credentials, for messages and logs. */
export function redactUri(uri: string): string {
  return uri.replace(/^([a-z+]+:\/\/)[^@/]*@/i, '$1***@');
}

/** The host list of a connection string, without scheme, credentials, database or options. */
export function hostsOf(uri: string): string {
  const match = /^[a-z+]+:\/\/(?:[^@/]*@)?([^/?]*)/i.exec(uri);
  return match?.[1] ?? '(unparseable URI)';
}

/** The database named in the URI path (`mongodb://host/db?opts`), if any. */
export function databaseFromUri(uri: string): string | undefined {
  const match = /^[a-z+]+:\/\/[^/]*\/([^?]+)/i.exec(uri);
  const name = match?.[1];
  return name === undefined ? undefined : decodeURIComponent(name);
}
