/**
 * The account part of the settings panel in real Chromium: changing the password signs the other window out
 * for good (its old password no longer works), and deleting the account goes back to the sign-in screen with
 * the name gone.
 */
import { describe, expect, it } from 'vitest';
import { browserSuite, PASSWORD, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

const NEW_PASSWORD = 'a brand new password';

describe('account settings', () => {
  it('a password change signs the other window out for good; deleting the account frees the name', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    const first = await User.open(e2e.browser, s.url, 'alice');
    const second = await User.open(e2e.browser, s.url, 'alice');
    users.push(first, second);
    await first.signUp();
    await second.signIn();
    await first.page.locator('.banner[data-reason="takeover"]').waitFor();

    const p = second.page;
    await p.click('.settings-button');
    await p.fill('#settings-current', PASSWORD);
    await p.fill('#settings-new', NEW_PASSWORD);
    await p.getByRole('button', { name: 'Change password' }).click();
    await p.locator('.form-ok:has-text("Password changed")').waitFor();
    await p.getByRole('button', { name: 'Close' }).click();
    await second.online(); // the window that changed it stays signed in

    // The other window cannot come back with the old password, only with the new one.
    await first.page.getByRole('button', { name: 'Sign in here again' }).click();
    await first.page.fill('#auth-password', PASSWORD);
    await first.page.click('.auth-form button[type=submit]');
    await first.page.locator('.auth-form .form-error:has-text("do not match")').waitFor();
    await first.signIn(NEW_PASSWORD);

    // Delete from the first window (now the live one).
    first.page.on('dialog', (d) => void d.accept());
    await first.page.click('.settings-button');
    await first.page.fill('#settings-delete-password', NEW_PASSWORD);
    await first.page.getByRole('button', { name: 'Delete account' }).click();
    await first.page.locator('.auth-notice:has-text("Your account was deleted.")').waitFor();
    expect(await first.page.locator('dialog[open]').count()).toBe(0);
    // The name is gone: signing in fails, creating it again works.
    await first.page.fill('#auth-name', 'alice');
    await first.page.fill('#auth-password', NEW_PASSWORD);
    await first.page.click('.auth-form button[type=submit]');
    await first.page.locator('.auth-form .form-error:has-text("do not match")').waitFor();
    await first.signUp();
    // The two refused sign-ins above are logged by the browser as 401s: expected, nothing else is.
    const problems = await first.allProblems();
    expect(problems.filter((x) => !(x.includes('401') && x.includes('/api/signin')))).toEqual([]);
    expect(problems.length).toBe(2);
  });
});
