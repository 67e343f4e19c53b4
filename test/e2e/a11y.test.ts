/**
 * Accessibility in real Chromium: axe-core (evaluated through the DevTools protocol, which the page's CSP allows)
 * finds no serious or critical violation on any main screen (sign-in, contacts, conversation, a room, settings), in
 * light and dark mode, at desktop and phone sizes. The message list is a labelled log reachable by keyboard,
 * and a message changing state is not announced again as new.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');




/** Serious and critical violations on the page as it is now, as "rule: target (summary)". */
async function violations(u: User, screen: string): Promise<string[]> {
  // Evaluated through the DevTools protocol: addScriptTag would add an inline script, which the page's CSP refuses.
  if (!(await u.page.evaluate(() => 'axe' in window))) await u.page.evaluate(AXE);
  const found = await u.page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: { id: string; impact: string | null; nodes: { target: unknown[]; failureSummary?: string }[] }[] }> } }).axe;
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .flatMap((v) => v.nodes.map((n) => `${v.id}: ${JSON.stringify(n.target)} ${n.failureSummary?.split('\n')[1]?.trim() ?? ''}`));
  });
  return found.map((f) => `${screen}: ${f}`);
}

const SIZES = { desktop: { width: 1100, height: 760 }, phone: { width: 390, height: 780 } } as const;

describe('accessibility', () => {
  for (const colorScheme of ['light', 'dark'] as const) {
    for (const [size, viewport] of Object.entries(SIZES)) {
      it(`has no serious violation on any screen (${colorScheme}, ${size})`, async () => {
        const s = await h.server({ CLIENT_DIR: e2e.dist });
        const [alice, bob] = await Promise.all([
          User.open(e2e.browser, s.url, 'alice', { viewport, colorScheme }),
          User.open(e2e.browser, s.url, 'bob'),
        ]);
        users.push(alice, bob);
        const found: string[] = [];
        await alice.page.locator('.auth-form').waitFor();
        found.push(...await violations(alice, 'sign-in'));
        await Promise.all([alice.signUp(), bob.signUp()]);
        await bob.addContact('alice');
        await bob.send('Hello from bob, see https://example.com');
        await poll(() => alice.unread('bob')).toBe('1');
        found.push(...await violations(alice, 'contacts'));
        await alice.openConversation('bob');
        await alice.send('Hi bob');
        await poll(() => alice.outgoing()).toEqual([['Hi bob', 'read']]);
        await alice.page.locator('.presence-line.online').waitFor();
        found.push(...await violations(alice, 'conversation'));
        // A room with a message of each side, and its members panel open.
        if (size === 'phone') await alice.page.locator('.conversation .conv-head .back').click();
        await alice.page.fill('.room-form input[name="room"]', 'Garden');
        await alice.page.locator('.room-form').getByRole('button', { name: 'Create', exact: true }).click();
        await alice.page.locator('.room-conversation .conv-head h2').waitFor();
        await bob.page.fill('.room-form input[name="room"]', 'garden');
        await bob.page.press('.room-form input[name="room"]', 'Enter');
        await bob.page.locator('.room-conversation .conv-head h2').waitFor();
        await bob.send('Hello room');
        await alice.send('Hi room');
        await poll(() => alice.outgoing()).toEqual([['Hi room', 'delivered']]);
        await poll(() => alice.texts()).toEqual(['Hello room', 'Hi room']);
        await alice.page.getByRole('button', { name: 'Members' }).click();
        found.push(...await violations(alice, 'room'));
        await alice.page.click('.settings-button');
        await alice.page.locator('dialog.settings[open]').waitFor();
        found.push(...await violations(alice, 'settings'));
        expect(found).toEqual([]);
        expect(await alice.allProblems()).toEqual([]);
      });
    }
  }

  it('keeps the message list a labelled log and changes a message in place, announcing only new ones', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const [alice, bob] = await Promise.all([User.open(e2e.browser, s.url, 'alice'), User.open(e2e.browser, s.url, 'bob')]);
    users.push(alice, bob);
    await Promise.all([alice.signUp(), bob.signUp()]);
    await alice.addContact('bob');
    const log = alice.page.getByRole('log', { name: 'Messages with bob' });
    expect(await log.getAttribute('tabindex')).toBe('0');
    expect(await log.getAttribute('aria-relevant')).toBe('additions');

    await alice.send('one');
    await poll(() => alice.outgoing()).toEqual([['one', 'delivered']]);
    // From here on, record every node added to the log: a state change must add none.
    await alice.page.evaluate(() => {
      const w = window as unknown as { __added: string[] };
      w.__added = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) w.__added.push(n instanceof Element ? n.className : `#text ${n.textContent}`);
      }).observe(document.querySelector('.messages')!, { childList: true, subtree: true });
    });
    await bob.openConversation('alice');
    await poll(() => alice.outgoing()).toEqual([['one', 'read']]);
    const added = () => alice.page.evaluate(() => (window as unknown as { __added: string[] }).__added);
    // The state text is a text node replaced inside the state element; no message item is added again.
    expect((await added()).filter((a) => a.startsWith('msg'))).toEqual([]);
    await bob.send('two');
    await poll(() => alice.texts()).toEqual(['one', 'two']);
    expect((await added()).filter((a) => a.startsWith('msg'))).toEqual(['msg in']);
  });

  it('keeps the phone header on one line in both languages, and a growing card in view', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const viewport = { width: 320, height: 640 };
    const [alice, bob] = await Promise.all([
      User.open(e2e.browser, s.url, 'alice-with-a-long-name', { viewport, locale: 'zh-CN' }),
      User.open(e2e.browser, s.url, 'bob', { viewport }),
    ]);
    users.push(alice, bob);
    await alice.page.getByRole('tab', { name: '创建账号' }).click();
    await alice.page.fill('#auth-name', alice.name);
    await alice.page.fill('#auth-password', 'a long enough password');
    await alice.page.click('.auth-form button[type=submit]');
    await Promise.all([alice.online(), bob.signUp()]);
    const oneLine = (u: User) => u.page.evaluate(() => {
      const bar = document.querySelector('.topbar')!.getBoundingClientRect();
      const kids = [...document.querySelectorAll('.topbar > *')].map((k) => k.getBoundingClientRect()).filter((r) => r.width > 0);
      return {
        oneRow: kids.every((r) => r.top >= bar.top && r.bottom <= bar.bottom + 0.5) && bar.height < 60,
        inside: kids.every((r) => r.right <= window.innerWidth + 0.5),
      };
    });
    expect(await oneLine(alice)).toEqual({ oneRow: true, inside: true });
    expect(await oneLine(bob)).toEqual({ oneRow: true, inside: true });

    await bob.addContact('alice-with-a-long-name');
    for (let i = 0; i < 20; i++) await bob.send(`line ${i}`);
    await poll(async () => (await bob.texts()).length).toBe(20);
    // A card at the bottom that grows after it was placed stays in view while bob was at the bottom.
    const inView = await bob.page.evaluate(async () => {
      const list = document.querySelector<HTMLElement>('.messages')!;
      const last = list.lastElementChild as HTMLElement;
      const grow = document.createElement('div');
      grow.className = 'grown';
      last.querySelector('.bubble')!.append(grow);
      grow.style.height = '400px';
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const l = list.getBoundingClientRect();
      const g = last.getBoundingClientRect();
      return g.bottom <= l.bottom + 1;
    });
    expect(inView).toBe(true);
    expect(await alice.allProblems()).toEqual([]);
    expect(await bob.allProblems()).toEqual([]);
  });
});
