/**
 * Text that reads well, in real Chromium: http, https and mailto addresses in a message become links that open
 * in a new tab without access to this page, `javascript:` stays text; a day line before each day's first
 * message; the conversation open before a reload is open after it.
 */
import { describe, expect, it } from 'vitest';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

describe('text that reads well', () => {
  it('links open safely, javascript: stays text, day lines, and the open conversation survives a reload', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    await h.account(s, 'bob');
    const alice = await User.open(e2e.browser, s.url, 'alice');
    users.push(alice);
    await alice.signUp();
    await alice.addContact('bob');
    const p = alice.page;

    // Yesterday, then today, by the page's clock (timers keep running).
    const now = new Date();
    const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1, 12, 0);
    await p.clock.setFixedTime(yesterday);
    await alice.send('from yesterday');
    await p.clock.setFixedTime(now);
    const text = `health at ${s.url}/healthz. Mail mailto:bob@example.org or javascript:window.__pwned=1 and see (https://example.org/a_(b)).`;
    await alice.send(text);
    await poll(() => alice.texts()).toEqual(['from yesterday', text]);
    expect(await p.locator('.messages .day-sep').allTextContents()).toEqual(['Yesterday', 'Today']);

    const links = await p.locator('.messages .text a').evaluateAll((as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.getAttribute('rel'), a.getAttribute('target')]));
    expect(links).toEqual([
      [`${s.url}/healthz`, `${s.url}/healthz`, 'noopener noreferrer', '_blank'],
      ['mailto:bob@example.org', 'mailto:bob@example.org', 'noopener noreferrer', '_blank'],
      ['https://example.org/a_(b)', 'https://example.org/a_(b)', 'noopener noreferrer', '_blank'],
    ]);
    // The whole text is still there, as text; nothing ran.
    expect(await p.locator('.messages .msg .text').last().textContent()).toBe(text);
    expect(await p.locator('.messages a[href^="javascript"]').count()).toBe(0);

    // Clicking opens a new tab that cannot reach back into this page.
    const [popup] = await Promise.all([alice.context.waitForEvent('page'), p.locator('.messages .text a').first().click()]);
    await popup.waitForLoadState();
    expect(popup.url()).toBe(`${s.url}/healthz`);
    expect(await popup.evaluate(() => window.opener)).toBeNull();
    await popup.close();
    expect(await p.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();

    // The conversation open before the reload is open after it, without picking it again.
    await p.reload();
    await alice.online();
    await p.locator('.conv-head h2:text-is("bob")').waitFor();
    await poll(() => alice.texts()).toEqual(['from yesterday', text]);
    expect(await alice.allProblems()).toEqual([]);
  });
});
