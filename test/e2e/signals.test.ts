/**
 * Read receipts and typing between two people in real Chromium: "Read" once the recipient has the
 * conversation on screen, "typing…" while the other types (gone when they clear the box), and neither when the
 * other turned them off in the settings panel.
 */
import { describe, expect, it } from 'vitest';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

async function pair(): Promise<[User, User]> {
  const s = await h.server({ CLIENT_DIR: e2e.dist });
  const [alice, bob] = await Promise.all([User.open(e2e.browser, s.url, 'alice'), User.open(e2e.browser, s.url, 'bob')]);
  users.push(alice, bob);
  await Promise.all([alice.signUp(), bob.signUp()]);
  await alice.addContact('bob');
  await alice.page.locator('.presence-line.online').waitFor();
  return [alice, bob];
}

/** Starts recording, in `u`'s page, whether a "typing…" line ever appears. */
async function watchTyping(u: User): Promise<void> {
  await u.page.evaluate(() => {
    const w = window as unknown as { __sawTyping: boolean };
    w.__sawTyping = false;
    new MutationObserver(() => {
      if (document.querySelector('.presence-line.typing')) w.__sawTyping = true;
    }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  });
}

describe('read receipts and typing', () => {
  it('shows Read once the other has the conversation open, and typing while they type', async () => {
    const [alice, bob] = await pair();
    await alice.send('Are you there?');
    await poll(() => alice.outgoing()).toEqual([['Are you there?', 'delivered']]);
    await poll(() => bob.unread('alice')).toBe('1');
    await bob.openConversation('alice');
    await poll(() => alice.outgoing()).toEqual([['Are you there?', 'read']]);
    expect(await alice.page.textContent('.msg.out .state')).toBe('Read');

    // While bob has it open, a new message is read at once.
    await alice.send('Good.');
    await poll(() => alice.outgoing()).toEqual([['Are you there?', 'read'], ['Good.', 'read']]);

    await bob.page.fill('.composer textarea', 'Yes, I am');
    await alice.page.locator('.presence-line.typing').waitFor();
    expect(await alice.page.textContent('.presence-line')).toBe('typing…');
    await bob.page.fill('.composer textarea', '');
    await alice.page.locator('.presence-line.online').waitFor();
    expect(await alice.page.locator('.presence-line.typing').count()).toBe(0);
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });

  it('sends neither when turned off in the settings panel', async () => {
    const [alice, bob] = await pair();
    await bob.page.click('.settings-button');
    await bob.page.getByLabel('Send read receipts').uncheck();
    await bob.page.getByLabel('Send typing indicators').uncheck();
    await bob.page.getByRole('button', { name: 'Close' }).click();
    await watchTyping(alice);

    await alice.send('Hello?');
    await poll(() => bob.unread('alice')).toBe('1');
    await bob.openConversation('alice');
    await poll(() => bob.texts()).toEqual(['Hello?']);
    await bob.send('Here, but quiet');
    await poll(() => alice.texts()).toEqual(['Hello?', 'Here, but quiet']);
    expect(await alice.outgoing()).toEqual([['Hello?', 'delivered']]);
    expect(await alice.page.evaluate(() => (window as unknown as { __sawTyping: boolean }).__sawTyping)).toBe(false);

    // The choice is this browser's: it survives a reload.
    await bob.page.reload();
    await bob.online();
    await bob.page.click('.settings-button');
    expect(await bob.page.getByLabel('Send read receipts').isChecked()).toBe(false);
    expect(await bob.page.getByLabel('Send typing indicators').isChecked()).toBe(false);
  });
});
