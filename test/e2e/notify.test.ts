/**
 * Notifications in real Chromium: one is shown for a message that arrives while the page is hidden, none for
 * the conversation on screen, none from a muted contact; clicking one opens its conversation. The page's own
 * code decides and calls `new Notification`; the test only records the calls (headless Chromium shows no
 * notification anyone could observe) and stands in for the page being hidden (headless Chromium keeps every
 * page visible), by an init script that answers `document.visibilityState` and fires `visibilitychange`.
 */
import { describe, expect, it } from 'vitest';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

/** Runs in the page before its own script: records notifications, lets the test hide the page. */
function observe(): void {
  const w = window as unknown as { __notes: { title: string; body: string; n: Notification }[]; __setHidden(h: boolean): void };
  w.__notes = [];
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title: string, opts?: NotificationOptions) {
      super(title, opts);
      w.__notes.push({ title, body: opts?.body ?? '', n: this });
    }
  };
  let hidden = false;
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  w.__setHidden = (h) => {
    hidden = h;
    document.dispatchEvent(new Event('visibilitychange'));
  };
}

type Win = { __notes: { title: string; body: string; n: Notification }[]; __setHidden(h: boolean): void };

const notes = (u: User) => u.page.evaluate(() => (window as unknown as Win).__notes.map(({ title, body }) => [title, body]));
const setHidden = (u: User, hidden: boolean) => u.page.evaluate((h) => (window as unknown as Win).__setHidden(h), hidden);

describe('notifications', () => {
  it('notifies of a message in a hidden page, not for the open conversation, not from a muted contact', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const [alice, bob] = await Promise.all([
      User.open(e2e.browser, s.url, 'alice'),
      User.open(e2e.browser, s.url, 'bob', { permissions: ['notifications'], init: observe }),
    ]);
    users.push(alice, bob);
    await Promise.all([alice.signUp(), bob.signUp()]);
    await alice.addContact('bob');

    await setHidden(bob, true);
    await alice.send('first');
    await poll(() => notes(bob)).toEqual([['alice', 'first']]);

    // Clicking it opens the conversation.
    await setHidden(bob, false);
    await bob.page.evaluate(() => (window as unknown as Win).__notes[0]!.n.dispatchEvent(new Event('click')));
    await bob.page.locator('.conv-head h2:text-is("alice")').waitFor();

    // On screen: no notification (the next one shown proves this one was decided first, in order).
    await alice.send('second');
    await poll(() => bob.texts()).toEqual(['first', 'second']);

    // Muted: none either, even hidden.
    await bob.page.click('.conv-head .mute');
    expect(await bob.page.getAttribute('.conv-head .mute', 'aria-pressed')).toBe('true');
    await setHidden(bob, true);
    await alice.send('third');
    await poll(() => bob.texts()).toEqual(['first', 'second', 'third']);
    await bob.page.click('.conv-head .mute');
    expect(await bob.page.getAttribute('.conv-head .mute', 'aria-pressed')).toBe('false');
    await alice.send('fourth');
    await poll(() => notes(bob)).toEqual([['alice', 'first'], ['alice', 'fourth']]);
    expect(await bob.page.locator('.notify-offer').isHidden()).toBe(true);
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });

  it('offers to turn notifications on after a message arrives out of view, never at load', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const [alice, bob] = await Promise.all([User.open(e2e.browser, s.url, 'alice'), User.open(e2e.browser, s.url, 'bob', { init: observe })]);
    users.push(alice, bob);
    await Promise.all([alice.signUp(), bob.signUp()]);
    expect(await bob.page.evaluate(() => Notification.permission)).toBe('default');
    expect(await bob.page.locator('.notify-offer').isHidden()).toBe(true);
    await alice.addContact('bob');
    await setHidden(bob, true);
    await alice.send('hello');
    await bob.page.locator('.notify-offer:not([hidden])').waitFor();
    await bob.page.getByRole('button', { name: 'Not now' }).click();
    expect(await bob.page.locator('.notify-offer').isHidden()).toBe(true);
    expect(await notes(bob)).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });
});
