/** Adding a contact in real Chromium: a name with no account is refused at once, in words; one with an account is added. */
import { describe, expect, it } from 'vitest';
import { browserSuite, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

describe('adding a contact', () => {
  it('refuses a name with no account at once, and adds one that has an account in its own spelling', async () => {
    const s = await h.server({ CLIENT_DIR: e2e.dist });
    await h.account(s, 'Bob');
    const alice = await User.open(e2e.browser, s.url, 'alice');
    users.push(alice);
    await alice.signUp();
    const p = alice.page;
    await p.fill('.add-contact input', 'nobody');
    await p.press('.add-contact input', 'Enter');
    await p.locator('.contacts-head .form-error:has-text("No one is called nobody here")').waitFor();
    expect(await p.locator('.contact').count()).toBe(0);
    expect(await p.inputValue('.add-contact input')).toBe('nobody'); // kept, to correct it

    await p.fill('.add-contact input', 'bob');
    await p.press('.add-contact input', 'Enter');
    await p.locator('.conv-head h2:text-is("Bob")').waitFor();
    expect(await p.locator('.contact-name').allTextContents()).toEqual(['Bob']);
    expect(await p.textContent('.contacts-head .form-error')).toBe('');
    expect(await alice.allProblems()).toEqual([]);
  });
});
