/**
 * Looking a contact up before adding it (`GET /api/contacts/:name`): the display form for a name with an
 * account (any case), UNKNOWN_CONTACT (404) for one without, signed-in only, and rate limited per person.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { findContact, ParleyHttpError } from '../../client/sdk/http.ts';
import { CONTACT_LOOKUPS_PER_MINUTE } from '../../server/core/accounts.ts';
import { Harness } from '../support/harness.ts';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ParleyHttpError ? `${err.status} ${err.code}` : String(err);
  }
}

describe('contact look-up', () => {
  const h = new Harness();
  afterEach(() => h.cleanup());

  it('says at once whether a name has an account, for signed-in people only, rate limited', async () => {
    const s = await h.server();
    const http = { baseUrl: s.url };
    const token = await h.account(s, 'alice');
    await h.account(s, 'Bob');
    await h.account(s, '小明');
    expect(await findContact(http, 'bob', token)).toEqual({ name: 'Bob' });
    expect(await findContact(http, '小明', token)).toEqual({ name: '小明' });
    expect(await code(findContact(http, 'nobody', token))).toBe('404 UNKNOWN_CONTACT');
    expect(await code(findContact(http, 'not a name!', token))).toBe('400 BAD_NAME');
    expect(await code(findContact(http, 'bob'))).toBe('401 UNAUTHORIZED');
    expect(await code(findContact(http, 'bob', 'forged-token'))).toBe('401 UNAUTHORIZED');

    // Three look-ups above counted (the refused name and the unauthenticated ones did not reach the limiter).
    const results: string[] = [];
    for (let i = 0; i < CONTACT_LOOKUPS_PER_MINUTE; i++) results.push(await code(findContact(http, `someone${i}`, token)));
    expect(results.slice(0, CONTACT_LOOKUPS_PER_MINUTE - 3).every((r) => r === '404 UNKNOWN_CONTACT')).toBe(true);
    expect(results.at(-1)).toBe('429 RATE_LIMITED');
    // Another person has their own budget.
    const carol = await h.account(s, 'carol');
    expect(await findContact(http, 'bob', carol)).toEqual({ name: 'Bob' });
  });
});
