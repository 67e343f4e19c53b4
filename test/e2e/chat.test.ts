/**
 * The chat in real Chromium against a real server: sign-up and sign-in, both-way chat with delivery states,
 * messages that wait while the recipient is away, history across a reload, the reconnecting state, takeover,
 * text that looks like HTML, a phone-sized window, and the same chat over HTTPS. Each user has their own
 * browser context (own cookies and IndexedDB).
 */
import { describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/app.ts';
import { browserSuite, poll, CuttableLink, selfSignedCert, User } from './browser.ts';

const e2e = browserSuite();
const { h, users, links } = e2e;

async function server(opts: { tls?: boolean; env?: Record<string, string> } = {}): Promise<RunningServer> {
  const env: Record<string, string> = { CLIENT_DIR: e2e.dist, ...opts.env };
  if (opts.tls) Object.assign(env, await selfSignedCert(h.tempDir()));
  return h.server(env);
}

async function user(s: { url: string }, name: string, viewport?: { width: number; height: number }): Promise<User> {
  const u = await User.open(e2e.browser, s.url, name, viewport ? { viewport } : {});
  users.push(u);
  return u;
}

async function expectNoProblems(...us: User[]): Promise<void> {
  for (const u of us) expect(await u.allProblems(), `${u.name}'s page`).toEqual([]);
}

/** Two signed-up users; alice has bob open, bob sees alice online. */
async function pair(s: { url: string }, a = 'alice', b = 'bob'): Promise<[User, User]> {
  const [alice, bob] = await Promise.all([user(s, a), user(s, b)]);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact(b);
  await alice.page.locator('.presence-line.online').waitFor();
  return [alice, bob];
}

/** The conversation works both ways with delivery states; returns nothing, throws on any difference. */
async function chatBothWays(alice: User, bob: User): Promise<void> {
  await alice.send('Hi Bob! 👋 Are you there?');
  await poll(() => alice.outgoing()).toEqual([['Hi Bob! 👋 Are you there?', 'delivered']]);
  // Bob was not looking at this conversation: the new contact shows up with one unread message.
  await poll(() => bob.unread('alice')).toBe('1');
  await bob.openConversation('alice');
  expect(await bob.texts()).toEqual(['Hi Bob! 👋 Are you there?']);
  await poll(() => bob.unread('alice')).toBe(null);
  await bob.page.locator('.presence-line.online').waitFor();

  await bob.send('Yes!\nTwo lines, and 小明 says hi.');
  // Alice has the conversation open, so bob's message is read at once; bob's page told alice it read hers.
  await poll(() => bob.outgoing()).toEqual([['Yes!\nTwo lines, and 小明 says hi.', 'read']]);
  await poll(() => alice.outgoing()).toEqual([['Hi Bob! 👋 Are you there?', 'read']]);
  await poll(() => alice.texts()).toEqual(['Hi Bob! 👋 Are you there?', 'Yes!\nTwo lines, and 小明 says hi.']);
  expect(await alice.page.locator('.msg.in .text').textContent()).toBe('Yes!\nTwo lines, and 小明 says hi.');
}

describe('chat in the browser', () => {
  it('shows sign-up and sign-in errors in words', async () => {
    const s = await server();
    const first = await user(s, 'carol');
    await first.signUp();
    const p = (await user(s, 'Carol')).page;

    await p.getByRole('tab', { name: 'Create account' }).click();
    await p.fill('#auth-name', 'Carol');
    await p.fill('#auth-password', 'another password');
    await p.click('.auth-form button[type=submit]');
    await poll(() => p.locator('.form-error').textContent()).toBe('Someone already has that name. Pick another one.');

    await p.fill('#auth-password', 'short');
    await p.click('.auth-form button[type=submit]');
    await poll(() => p.locator('.form-error').textContent()).toBe('Passwords need at least 8 characters.');

    await p.getByRole('tab', { name: 'Sign in' }).click();
    await p.fill('#auth-name', 'carol');
    await p.fill('#auth-password', 'not the password');
    await p.click('.auth-form button[type=submit]');
    await poll(() => p.locator('.form-error').textContent()).toBe('That name and password do not match. Check both and try again.');

    await p.fill('#auth-name', 'no spaces allowed');
    await p.getByRole('tab', { name: 'Create account' }).click();
    await p.fill('#auth-password', 'long enough password');
    await p.click('.auth-form button[type=submit]');
    await poll(() => p.locator('.form-error').textContent()).toMatch(/^Names are 1 to 32/);
  });

  it('two users sign up and chat both ways, and see their messages delivered', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    await chatBothWays(alice, bob);
    await expectNoProblems(alice, bob);
  });

  it('messages sent while the recipient is away wait, and arrive in order when they come back', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    await alice.send('before you left');
    await poll(() => alice.outgoing()).toEqual([['before you left', 'delivered']]);

    await bob.page.close(); // bob never had the conversation open: delivered, not read
    await alice.page.locator('.presence-line:not(.online)').waitFor();
    const away = ['one', 'two', 'three', 'four: the last'];
    for (const t of away) await alice.send(t);
    await poll(() => alice.outgoing()).toEqual([['before you left', 'delivered'], ...away.map((t) => [t, 'queued'])]);
    expect(await alice.page.locator('.msg[data-state="queued"] .state').first().textContent()).toBe('Waiting for bob to come online');

    // Bob comes back in the same browser: the cookie still signs him in.
    await bob.newPage();
    await bob.online();
    await poll(() => bob.unread('alice')).toBe(String(1 + away.length));
    await bob.openConversation('alice');
    await poll(() => bob.texts()).toEqual(['before you left', ...away]);
    await poll(() => alice.outgoing()).toEqual([['before you left', 'read'], ...away.map((t) => [t, 'read'])]);
    await expectNoProblems(alice, bob);
  });

  it('a reload keeps the conversation, its order and its states, and shows nothing twice', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    await chatBothWays(alice, bob);
    const expected = ['Hi Bob! 👋 Are you there?', 'Yes!\nTwo lines, and 小明 says hi.'];

    for (const u of [alice, bob]) {
      await u.page.reload();
      await u.online();
      await u.openConversation(u === alice ? 'bob' : 'alice');
      await poll(() => u.texts()).toEqual(expected);
    }
    expect(await alice.outgoing()).toEqual([[expected[0], 'read']]);
    expect(await bob.outgoing()).toEqual([[expected[1], 'read']]);
    // Nothing became unread again by being loaded from history.
    expect(await alice.unread('bob')).toBe(null);
    await expectNoProblems(alice, bob);
  });

  it('shows that it is reconnecting, keeps what you write, and sends it once the network is back', async () => {
    const link = await CuttableLink.open();
    links.push(link);
    const s = await server({ env: { ALLOWED_ORIGINS: link.url } });
    link.target = new URL(s.url);
    const [alice, bob] = await pair({ url: link.url });
    await bob.addContact('alice');

    link.cut();
    await alice.page.locator('.banner.warn').waitFor();
    expect(await alice.page.locator('.banner').textContent()).toContain('Reconnecting');
    expect(await alice.page.locator('.conn-pill').textContent()).toBe('Reconnecting…');
    await alice.send('written while the network was down');
    await poll(() => alice.outgoing()).toEqual([['written while the network was down', 'sending']]);
    link.restore();
    await poll(() => alice.outgoing()).toEqual([['written while the network was down', 'read']]);
    await poll(() => bob.texts()).toEqual(['written while the network was down']);
    await poll(() => alice.page.locator('.banner').isHidden()).toBe(true);

    // Written offline, then the page reloaded before the network came back: kept in this browser's
    // history and sent with its original id once the page is back.
    link.cut();
    await alice.page.locator('.banner.warn').waitFor();
    await alice.send('written offline, then reloaded');
    await poll(() => alice.outgoing()).toEqual([['written while the network was down', 'read'], ['written offline, then reloaded', 'sending']]);
    await alice.page.goto('about:blank'); // the page and the SDK's in-memory outbox are gone
    link.restore();
    await alice.page.goto(link.url);
    await alice.online();
    await alice.openConversation('bob');
    await poll(() => alice.outgoing()).toEqual([['written while the network was down', 'read'], ['written offline, then reloaded', 'read']]);
    await poll(() => bob.texts()).toEqual(['written while the network was down', 'written offline, then reloaded']);
  });

  it('a second sign-in with the same name shows the takeover banner, with a way back in', async () => {
    const s = await server();
    const [alice] = await pair(s);
    const elsewhere = await user(s, 'alice');
    await elsewhere.signIn();

    const banner = alice.page.locator('.banner[data-reason="takeover"]');
    await banner.waitFor();
    expect(await banner.textContent()).toContain('somewhere else');
    expect(await alice.page.locator('.composer textarea').isDisabled()).toBe(true);
    expect(await alice.page.locator('.conn-pill').textContent()).toBe('Disconnected');

    await banner.getByRole('button', { name: 'Sign in here again' }).click();
    expect(await alice.page.inputValue('#auth-name')).toBe('alice');
    await alice.page.fill('#auth-password', 'a long enough password');
    await alice.page.click('.auth-form button[type=submit]');
    await alice.online();
    // Now the other window is the one taken over.
    await elsewhere.page.locator('.banner[data-reason="takeover"]').waitFor();
    await expectNoProblems(alice, elsewhere);
  });

  it('of two tabs in one browser the newer one is connected; the older says so and can take over again', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    const first = alice.page;
    const second = await alice.newPage();
    await alice.online();
    const banner = first.locator('.banner[data-reason="other-tab"]');
    await banner.waitFor();
    expect(await first.locator('.conn-pill').textContent()).toBe('Disconnected');
    // The second tab stays connected (no tug of war over the shared session) and can talk.
    await second.locator('.contact-name:text-is("bob")').click();
    await alice.send('from the second tab');
    await poll(() => alice.outgoing()).toEqual([['from the second tab', 'delivered']]);
    expect(await alice.page.locator('.conn-pill').getAttribute('data-state')).toBe('open');

    await banner.getByRole('button', { name: 'Use here' }).click();
    await first.locator('.conn-pill[data-state="open"]').waitFor();
    await second.locator('.banner[data-reason="other-tab"]').waitFor();
    alice.page = first;
    await alice.openConversation('bob');
    await poll(() => alice.texts()).toEqual(['from the second tab']);
    await expectNoProblems(alice, bob);
  });

  it('text that looks like HTML or script shows up as text and runs nothing', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    await bob.addContact('alice');
    const attacks = [
      '<img src=x onerror=window.__pwned=1>',
      '<script>window.__pwned=1</script>',
      '<a href="javascript:window.__pwned=1">click</a><style>body{display:none}</style>',
    ];
    for (const t of attacks) await alice.send(t);
    await poll(() => bob.texts()).toEqual(attacks);
    await poll(() => alice.outgoing()).toEqual(attacks.map((t) => [t, 'read']));
    for (const u of [alice, bob]) {
      expect(await u.page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(await u.page.locator('.messages img, .messages script, .messages a, .messages style').count()).toBe(0);
    }
    // The contact list's preview is text too.
    expect(await bob.page.locator('.contact-last').first().textContent()).toBe(attacks[2]);
    await bob.page.reload();
    await bob.online();
    await bob.openConversation('alice');
    await poll(() => bob.texts()).toEqual(attacks);
    expect(await bob.page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    await expectNoProblems(alice, bob);
  });

  it('signing out goes back to the sign-in screen for good, and signing in again finds the history', async () => {
    const s = await server();
    const [alice, bob] = await pair(s);
    await alice.send('see you after sign-out');
    await poll(() => alice.outgoing()).toEqual([['see you after sign-out', 'delivered']]);
    await alice.page.getByRole('button', { name: 'Sign out' }).click();
    await alice.page.locator('.auth-notice').waitFor();
    expect(await alice.page.locator('.auth-notice').textContent()).toContain('You signed out.');
    // Bob sees her go.
    await bob.openConversation('alice');
    await bob.page.locator('.presence-line:not(.online)').waitFor();
    // The cookie is gone: a reload shows the sign-in screen, not the messenger.
    await alice.page.reload();
    await alice.page.locator('#auth-name').waitFor();
    expect(await alice.page.locator('.shell').count()).toBe(0);
    await alice.signIn();
    await alice.openConversation('bob');
    // Bob read it while she was away; his page tells her again when she is back (best effort, docs/protocol.md).
    await poll(() => alice.outgoing()).toEqual([['see you after sign-out', 'read']]);
    await expectNoProblems(alice, bob);
  });

  it('works in a phone-sized window: one pane at a time, with a way back', async () => {
    const s = await server();
    const phone = { width: 390, height: 780 };
    await h.account(s, 'bob'); // contacts must exist to be added
    const alice = await user(s, 'alice', phone);
    await alice.signUp();
    await alice.addContact('bob');
    expect(await alice.page.locator('.sidebar').isVisible()).toBe(false);
    expect(await alice.page.locator('.composer textarea').isVisible()).toBe(true);
    await alice.page.getByRole('button', { name: 'Back to contacts' }).click();
    expect(await alice.page.locator('.sidebar').isVisible()).toBe(true);
    expect(await alice.page.locator('.main').isVisible()).toBe(false);
    // Nothing wider than the screen, even with a long last message in the list.
    await alice.openConversation('bob');
    await alice.send('a long message that would not fit on one line of a phone-sized contact list');
    await alice.page.getByRole('button', { name: 'Back to contacts' }).click();
    expect(await alice.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(phone.width);
    for (const sel of ['.add-contact button', '.contact', '.topbar button']) {
      const box = await alice.page.locator(sel).first().boundingBox();
      expect(box && box.x + box.width, sel).toBeLessThanOrEqual(phone.width);
    }
    await expectNoProblems(alice);
  });

  it('the same chat works over HTTPS with a self-signed certificate', async () => {
    const s = await server({ tls: true });
    expect(s.url).toMatch(/^https:/);
    const [alice, bob] = await pair(s);
    expect(await alice.page.evaluate(() => location.protocol)).toBe('https:');
    await chatBothWays(alice, bob);
    await expectNoProblems(alice, bob);
  });
});
