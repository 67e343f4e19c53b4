/**
 * The HTTP half of the SDK: register, sign in, sign out. Errors come back as `ParleyHttpError` with the
 * server's code (`BAD_CREDENTIALS`, `NAME_TAKEN`, `RATE_LIMITED`, ...), so callers can show them in words.
 */
import type { ErrorCodeName } from '../../shared/codes.ts';

export class ParleyHttpError extends Error {
  constructor(readonly status: number, readonly code: ErrorCodeName | 'NETWORK', message: string) {
    super(message);
    this.name = 'ParleyHttpError';
  }
}

export interface HttpOptions {
  /** Base URL of the server, e.g. `http://127.0.0.1:8080`; '' in the browser for same-origin. */
  baseUrl: string;
  fetch?: typeof fetch;
}

async function call<T>(opts: HttpOptions, path: string, body: unknown, token?: string): Promise<T> {
  const f = opts.fetch ?? globalThis.fetch;
  let res: Response;
  try {
    res = await f(opts.baseUrl + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ParleyHttpError(0, 'NETWORK', `cannot reach the server (${(err as Error).message})`);
  }
  const data = (await res.json().catch(() => ({}))) as { error?: { code: ErrorCodeName; message: string } } & T;
  if (!res.ok) {
    throw new ParleyHttpError(res.status, data.error?.code ?? 'INTERNAL', data.error?.message ?? `HTTP ${res.status}`);
  }
  return data;
}

export function register(opts: HttpOptions, name: string, password: string): Promise<{ name: string }> {
  return call(opts, '/api/register', { name, password });
}

export function signIn(opts: HttpOptions, name: string, password: string): Promise<{ name: string; token: string; expires: number }> {
  return call(opts, '/api/signin', { name, password });
}

export function signOut(opts: HttpOptions, token?: string): Promise<{ ok: boolean }> {
  return call(opts, '/api/signout', {}, token);
}

/** True when the session (cookie or token) is valid, false when the server says it is not, null when unreachable. */
export async function sessionValid(opts: HttpOptions, token?: string): Promise<boolean | null> {
  const f = opts.fetch ?? globalThis.fetch;
  try {
    const res = await f(opts.baseUrl + '/api/session', { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: 'same-origin' });
    if (res.status === 401) return false;
    return res.ok ? true : null;
  } catch {
    return null;
  }
}

/**
 * Whether `name` has an account (for adding a contact): its display form, or a ParleyHttpError with
 * `UNKNOWN_CONTACT`, `BAD_NAME`, `RATE_LIMITED`, `UNAUTHORIZED`, or `NETWORK` when the server cannot be reached.
 */
export async function findContact(opts: HttpOptions, name: string, token?: string): Promise<{ name: string }> {
  const f = opts.fetch ?? globalThis.fetch;
  let res: Response;
  try {
    res = await f(`${opts.baseUrl}/api/contacts/${encodeURIComponent(name)}`, { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: 'same-origin' });
  } catch (err) {
    throw new ParleyHttpError(0, 'NETWORK', `cannot reach the server (${(err as Error).message})`);
  }
  const data = (await res.json().catch(() => ({}))) as { name?: string; error?: { code: ErrorCodeName; message: string } };
  if (!res.ok || typeof data.name !== 'string') {
    throw new ParleyHttpError(res.status, data.error?.code ?? 'INTERNAL', data.error?.message ?? `HTTP ${res.status}`);
  }
  return { name: data.name };
}

/** Changes the signed-in account's password; the server ends every other session of the name. */
export function changePassword(opts: HttpOptions, current: string, password: string, token?: string): Promise<{ ok: boolean }> {
  return call(opts, '/api/account/password', { current, password }, token);
}

/** Deletes the signed-in account, its sessions and the messages waiting for it. */
export function deleteAccount(opts: HttpOptions, password: string, token?: string): Promise<{ ok: boolean }> {
  return call(opts, '/api/account/delete', { password }, token);
}
