import type { ErrorCodeName } from '../../shared/codes.ts';

/** HTTP status for each error code that can reach an HTTP client. */
const HTTP_STATUS: Partial<Record<ErrorCodeName, number>> = {
  BAD_REQUEST: 400, BAD_NAME: 400, BAD_PASSWORD: 400, TOO_LARGE: 413,
  BAD_CREDENTIALS: 401, UNAUTHORIZED: 401, FORBIDDEN_ORIGIN: 403, NOT_FOUND: 404, UNKNOWN_CONTACT: 404,
  NAME_TAKEN: 409, NAME_CONFUSABLE: 409, RATE_LIMITED: 429, STORE_UNAVAILABLE: 503, SHUTTING_DOWN: 503, INTERNAL: 500,
};

/**
 * The one error type the core throws on purpose. `code` comes from shared/codes.ts and reaches the client as
 * an error frame or an HTTP error body; `message` is for people and never contains secrets.
 */
export class AppError extends Error {
  constructor(readonly code: ErrorCodeName, message: string, readonly ref?: string | number) {
    super(message);
    this.name = 'AppError';
  }

  get httpStatus(): number {
    return HTTP_STATUS[this.code] ?? 400;
  }
}
