/**
 * Account changes over real HTTP and sockets: changing the password needs the current one, keeps the asking
 * session and deletes every other session of the name; deleting the account needs the password, closes the
 * live socket (SESSION_ENDED), deletes the account, its sessions and its queue, and frees the name.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { changePassword, deleteAccount, ParleyHttpError, sessionValid, signIn } from '../../client/sdk/http.ts';
import { hashToken } from '../../server/core/accounts.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { CloseCode } from '../../shared/codes.ts';
import { Harness, PASSWORD } from '../support/harness.ts';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ParleyHttpError ? err.code : String(err);
  }
}

const NEW_PASSWORD = 'another long password';

describe('account changes', () => {
  const h = new Harness();
  afterEach(() => h.cleanup());

  it('changing the password needs the current one and deletes every other session of the name', async () => {
    const store = new EmbeddedStore({ dir: h.tempDir() });
    await store.open();
    const s = await h.server({}, store);
    const http = { baseUrl: s.url };
    const older = await h.account(s, 'alice');
    const current = await h.account(s, 'alice', PASSWORD, { register: false });
    expect(await store.getSession(hashToken(older))).not.toBeNull(); // replaced, still stored

    expect(await code(changePassword(http, 'not my password', NEW_PASSWORD, current))).toBe('BAD_CREDENTIALS');
    expect(await code(changePassword(http, PASSWORD, 'short', current))).toBe('BAD_PASSWORD');
    expect(await code(changePassword(http, PASSWORD, NEW_PASSWORD, older))).toBe('UNAUTHORIZED'); // taken over
    expect(await code(changePassword(http, PASSWORD, NEW_PASSWORD))).toBe('UNAUTHORIZED');
    expect(await code(changePassword(http, PASSWORD, NEW_PASSWORD, current))).toBe('ok');

    expect(await store.getSession(hashToken(older))).toBeNull();
    expect(await sessionValid(http, current)).toBe(true);
    expect(await code(signIn(http, 'alice', PASSWORD))).toBe('BAD_CREDENTIALS');
    expect(await code(signIn(http, 'alice', NEW_PASSWORD))).toBe('ok');
  });

  it('deleting the account closes its socket and removes it with its sessions and queue; the name is free again', async () => {
    const store = new EmbeddedStore({ dir: h.tempDir() });
    await store.open();
    const s = await h.server({}, store);
    const http = { baseUrl: s.url };
    const aliceToken = await h.account(s, 'alice');
    const bob = h.client(s, await h.account(s, 'bob'));
    await bob.connect();
    const alice = h.client(s, aliceToken);
    await alice.connect();
    // Bob's message waits for alice while she is away, then she deletes the account.
    alice.close();
    const id = bob.send('alice', 'are you there?');
    await bob.once('receipt', (r) => r.id === id && r.state === 'queued');
    expect(await store.queueLength('alice')).toBe(1);

    const live = h.client(s, aliceToken);
    await live.connect();
    const closed = live.once('state', (e) => e.to === 'closed');
    expect(await code(deleteAccount(http, 'wrong password', aliceToken))).toBe('BAD_CREDENTIALS');
    expect(await code(deleteAccount(http, PASSWORD, aliceToken))).toBe('ok');
    expect((await closed).reason).toBe('session-ended');
    expect(CloseCode.SESSION_ENDED).toBe(4002);

    expect(await store.getAccount('alice')).toBeNull();
    expect(await store.getSession(hashToken(aliceToken))).toBeNull();
    expect(await store.queueLength('alice')).toBe(0);
    expect(await sessionValid(http, aliceToken)).toBe(false);
    expect(await code(signIn(http, 'alice', PASSWORD))).toBe('BAD_CREDENTIALS');
    // Messages to the name now get a clear error, until someone registers it again.
    const failed = bob.once('failed');
    bob.send('alice', 'hello?');
    expect((await failed).code).toBe('UNKNOWN_CONTACT');
    await h.account(s, 'alice', NEW_PASSWORD);
    expect(await store.getAccount('alice')).not.toBeNull();
  });
});
