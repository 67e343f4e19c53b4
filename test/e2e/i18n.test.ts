/**
 * Languages in real Chromium: a zh-CN browser gets the page in Chinese with `lang="zh-CN"` (no English words
 * left on the sign-in screen or the messenger), the switch turns it into English at once and the choice
 * survives a reload; an English browser gets English.
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { browserSuite, PASSWORD, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

/** Latin words of three letters or more in what the page shows, other than the given names and the brand. */
async function latinWords(page: Page, allowed: string[]): Promise<string[]> {
  const text = await page.evaluate(() => {
    const attrs = [...document.querySelectorAll('[placeholder],[aria-label],[title]')]
      .flatMap((e) => ['placeholder', 'aria-label', 'title'].map((a) => e.getAttribute(a) ?? ''));
    // The language switch names each language in itself ("English" in the Chinese page): not a leftover.
    const shown = [...document.body.querySelectorAll('*')].filter((e) => !e.closest('select, noscript, script, style') && e.children.length === 0).map((e) => e.textContent ?? '');
    return [...shown, ...attrs].join(' ');
  });
  return (text.match(/[A-Za-z]{3,}/g) ?? []).filter((w) => !['Parley', ...allowed].includes(w));
}

describe('languages', () => {
  it('a zh-CN browser gets Chinese with lang="zh-CN", and the switch turns it into English for good', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    await h.account(s, 'bob'); // exists, offline: messages to bob wait on the server
    const u = await User.open(e2e.browser, s.url, 'xiaoming', { locale: 'zh-CN' });
    users.push(u);
    const p = u.page;
    await p.getByRole('tab', { name: '创建账号' }).waitFor();
    expect(await p.getAttribute('html', 'lang')).toBe('zh-CN');
    expect(await latinWords(p, [])).toEqual([]);

    await p.getByRole('tab', { name: '创建账号' }).click();
    await p.fill('#auth-name', 'xiaoming');
    await p.fill('#auth-password', PASSWORD);
    await p.click('.auth-form button[type=submit]');
    await u.online();
    expect(await p.textContent('.conn-pill')).toBe('在线');
    expect(await p.textContent('.topbar .secondary')).toBe('退出登录');
    await p.fill('.add-contact input', 'bob');
    await p.press('.add-contact input', 'Enter');
    await p.locator('.conv-head h2:text-is("bob")').waitFor();
    await u.send('你好');
    await poll(() => u.outgoing()).toEqual([['你好', 'queued']]);
    expect(await p.textContent('.msg.out .state')).toBe('等待 bob 上线');
    expect(await latinWords(p, ['xiaoming', 'bob'])).toEqual([]);

    // Switch to English: at once, same connection, nothing reloaded.
    await p.selectOption('.topbar .lang-switch', 'en');
    await poll(() => p.getAttribute('html', 'lang')).toBe('en');
    expect(await p.textContent('.topbar .secondary')).toBe('Sign out');
    expect(await p.textContent('.conn-pill')).toBe('Online');
    expect(await p.getAttribute('.composer textarea', 'placeholder')).toBe('Message bob');
    // The choice is remembered over the browser's languages.
    await p.reload();
    await u.online();
    expect(await p.getAttribute('html', 'lang')).toBe('en');
    expect(await p.textContent('.topbar .secondary')).toBe('Sign out');
    // And back, from the sign-in screen after signing out.
    await p.click('.topbar .secondary');
    await p.getByRole('tab', { name: 'Create account' }).waitFor();
    await p.selectOption('.auth-lang .lang-switch', 'zh-CN');
    await p.getByRole('tab', { name: '创建账号' }).waitFor();
    expect(await p.getAttribute('html', 'lang')).toBe('zh-CN');
    expect(await u.allProblems()).toEqual([]);
  });

  it('an English browser gets English', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const u = await User.open(e2e.browser, s.url, 'alice', { locale: 'en-GB' });
    users.push(u);
    await u.page.getByRole('tab', { name: 'Create account' }).waitFor();
    expect(await u.page.getAttribute('html', 'lang')).toBe('en');
  });
});
