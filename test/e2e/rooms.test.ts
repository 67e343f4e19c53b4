/**
 * Rooms in real Chromium against a real server: three people create and join a room (by name, and from the
 * public list), chat with sender names, one goes offline and catches up, one is removed and gets nothing after;
 * the sender sees "delivered to k of n" and who has it; unread counts in the room list; a newcomer's recent
 * history; removal while away; a private room joined by an invitation made while away, ownership handed over,
 * leaving; files say they stay one-to-one.
 */
import { describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/app.ts';
import { browserSuite, poll, User } from './browser.ts';

const e2e = browserSuite();
const { h, users } = e2e;

async function server(): Promise<RunningServer> {
  return h.server({ CLIENT_DIR: e2e.dist });
}

async function user(s: { url: string }, name: string): Promise<User> {
  const u = await User.open(e2e.browser, s.url, name);
  users.push(u);
  // Leaving, removing and handing over ask first: the person says yes.
  u.context.on('page', (p) => p.on('dialog', (d) => void d.accept()));
  u.page.on('dialog', (d) => void d.accept());
  return u;
}

async function expectNoProblems(...us: User[]): Promise<void> {
  for (const u of us) expect(await u.allProblems(), `${u.name}'s page`).toEqual([]);
}

async function roomForm(u: User, name: string, button: 'Join' | 'Create', priv = false): Promise<void> {
  await u.page.fill('.room-form input[name="room"]', name);
  if (priv) await u.page.check('#room-private');
  await u.page.locator('.room-form').getByRole('button', { name: button, exact: true }).click();
}

async function inRoom(u: User, room: string): Promise<void> {
  await u.page.locator(`.room-conversation .conv-head h2:text-is("${room}")`).waitFor();
}

const lines = (u: User) => u.page.locator('.messages .msg.line').allTextContents();
const senders = (u: User) => u.page.locator('.messages .msg.in .sender').allTextContents();
const stateText = (u: User, text: string) => u.page.locator(`.msg.out:has(.text:text-is("${text}")) .state`).textContent();
const memberOnline = (u: User, name: string) => u.page.locator(`.member[data-member="${name}"]`).getAttribute('data-online', { timeout: 2000 }).catch(() => null);
const roomUnread = (u: User, room: string) =>
  u.page.locator(`.contact.room:has(.contact-name:text-is("${room}")) .unread`).textContent({ timeout: 2000 }).catch(() => null);

describe('rooms in the browser', () => {
  it('three people chat in a room; one goes offline and catches up; one is removed and gets nothing after', async () => {
    const s = await server();
    const [alice, bob, carol] = await Promise.all([user(s, 'alice'), user(s, 'bob'), user(s, 'carol')]);
    await Promise.all([alice.signUp(), bob.signUp(), carol.signUp()]);

    await roomForm(alice, 'Garden', 'Create');
    await inRoom(alice, 'Garden');
    await roomForm(bob, 'garden', 'Join'); // by name, any case
    await inRoom(bob, 'Garden');
    // Carol finds it in the public list.
    await carol.page.getByRole('button', { name: 'Browse public rooms' }).click();
    await carol.page.getByRole('button', { name: 'Join Garden' }).click();
    await inRoom(carol, 'Garden');
    await poll(() => lines(alice)).toEqual(['alice created the room', 'bob joined', 'carol joined']);

    await alice.page.getByRole('button', { name: 'Members' }).click();
    await poll(() => memberOnline(alice, 'carol')).toBe('true');
    await poll(() => alice.page.locator('.room-conversation .presence-line').textContent()).toBe('3 members, 3 online');

    // From here on, record what is added to alice's log: her message taking its place and its counts add nothing.
    await alice.page.evaluate(() => {
      const w = window as unknown as { __added: string[] };
      w.__added = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) if (n instanceof Element) w.__added.push(n.className);
      }).observe(document.querySelector('.room-conversation .messages')!, { childList: true, subtree: true });
    });
    await alice.send('Hello, garden!');
    await poll(() => alice.outgoing()).toEqual([['Hello, garden!', 'delivered']]);
    expect((await alice.page.evaluate(() => (window as unknown as { __added: string[] }).__added)).filter((c) => c.startsWith('msg'))).toEqual(['msg out']);
    expect(await stateText(alice, 'Hello, garden!')).toBe('Delivered to 2 of 2');
    for (const u of [bob, carol]) await poll(() => u.texts()).toEqual(['Hello, garden!']);
    expect(await senders(bob)).toEqual(['alice']);
    await bob.send('Hi all, bob here');
    await poll(() => alice.texts()).toEqual(['Hello, garden!', 'Hi all, bob here']);
    await poll(() => carol.texts()).toEqual(['Hello, garden!', 'Hi all, bob here']);

    // Bob looks at a contact instead: the room counts what he has not seen.
    await bob.addContact('alice');
    await alice.send('Bob, are you there?');
    await poll(() => roomUnread(bob, 'Garden')).toBe('1');
    await bob.openConversation('Garden');
    await poll(() => roomUnread(bob, 'Garden')).toBe(null);

    // Carol goes away; what is said meanwhile waits for her.
    await carol.page.close();
    await poll(() => memberOnline(alice, 'carol')).toBe('false');
    await alice.send('Carol is away');
    await poll(() => stateText(alice, 'Carol is away')).toBe('Delivered to 1 of 2');
    const said = alice.page.locator('.msg.out:has(.text:text-is("Carol is away"))');
    await said.getByRole('button', { name: 'Who has it?' }).click();
    await poll(() => said.locator('.who').textContent()).toBe('Has it: bob · Not yet: carol');

    await carol.newPage();
    await carol.online();
    await inRoom(carol, 'Garden'); // the room open before is open again
    await poll(() => carol.texts()).toEqual(['Hello, garden!', 'Hi all, bob here', 'Bob, are you there?', 'Carol is away']);
    await poll(() => stateText(alice, 'Carol is away')).toBe('Delivered to 2 of 2');
    await poll(() => memberOnline(alice, 'carol')).toBe('true');

    // The owner removes carol: she is told, and gets nothing said after.
    await alice.page.getByRole('button', { name: 'Remove carol from the room' }).click();
    await poll(() => carol.page.locator('.room-gone').textContent()).toBe('You were removed from this room.');
    await alice.send('Just the two of us');
    await poll(() => bob.texts()).toEqual(['Hello, garden!', 'Hi all, bob here', 'Bob, are you there?', 'Carol is away', 'Just the two of us']);
    await poll(() => stateText(alice, 'Just the two of us')).toBe('Delivered to 1 of 1');
    await poll(() => lines(bob)).toEqual(['alice created the room', 'bob joined', 'carol joined', 'carol was removed']);
    expect(await carol.texts()).toEqual(['Hello, garden!', 'Hi all, bob here', 'Bob, are you there?', 'Carol is away']);
    expect(await carol.page.locator('.room-conversation .composer').count()).toBe(0);

    // Files stay one-to-one, and the room says so.
    await alice.page.locator('.room-conversation .file-button').click();
    await poll(() => alice.page.locator('.files-note').textContent()).toMatch(/^Files and videos go to one contact at a time/);
    await expectNoProblems(alice, bob, carol);
  });

  it('a newcomer gets the recent history; a member removed while away is told so when back', async () => {
    const s = await server();
    const [alice, bob] = await Promise.all([user(s, 'alice'), user(s, 'bob')]);
    await Promise.all([alice.signUp(), bob.signUp()]);
    await roomForm(alice, 'Hall', 'Create');
    await inRoom(alice, 'Hall');
    await alice.send('said before bob came');
    await poll(() => alice.outgoing()).toEqual([['said before bob came', 'queued']]);
    expect(await stateText(alice, 'said before bob came')).toBe('Sent'); // nobody else to deliver to
    await roomForm(bob, 'hall', 'Join');
    await inRoom(bob, 'Hall');
    await poll(() => bob.texts()).toEqual(['said before bob came']);
    await poll(() => lines(bob)).toEqual(['alice created the room', 'bob joined']);
    expect(await roomUnread(bob, 'Hall')).toBe(null);

    await bob.page.close();
    await alice.page.getByRole('button', { name: 'Members' }).click();
    await poll(() => memberOnline(alice, 'bob')).toBe('false');
    await alice.page.getByRole('button', { name: 'Remove bob from the room' }).click();
    await poll(() => lines(alice)).toEqual(['alice created the room', 'bob joined', 'bob was removed']);
    await alice.send('after bob went');
    await bob.newPage();
    await bob.online();
    await inRoom(bob, 'Hall');
    await poll(() => bob.page.locator('.room-gone').textContent()).toBe('You were removed from this room.');
    expect(await bob.texts()).toEqual(['said before bob came']);
    await expectNoProblems(alice, bob);
  });

  it('a private room admits the invited; the owner hands it over and leaves', async () => {
    const s = await server();
    const [alice, bob] = await Promise.all([user(s, 'alice'), user(s, 'bob')]);
    await Promise.all([alice.signUp(), bob.signUp()]);
    await roomForm(alice, 'Secret', 'Create', true);
    await inRoom(alice, 'Secret');
    await poll(() => alice.page.locator('.room-conversation .presence-line').textContent()).toBe('1 member, 1 online · Private');

    await roomForm(bob, 'secret', 'Join');
    await poll(() => bob.page.locator('.rooms .form-error').textContent()).toBe('secret is private. Ask its owner for an invitation.');
    await bob.page.getByRole('button', { name: 'Browse public rooms' }).click();
    await poll(() => bob.page.locator('.public-rooms').textContent()).toBe('No public rooms yet.');

    // Invited while away, bob finds the invitation when he comes back.
    await bob.page.close();
    await alice.page.getByRole('button', { name: 'Members' }).click();
    await alice.page.fill('.room-invite input', 'bob');
    await alice.page.press('.room-invite input', 'Enter');
    await poll(() => alice.page.locator('.member-status').textContent()).toBe('bob is invited.');
    await bob.newPage();
    await bob.online();
    await bob.page.locator('.invitation').getByRole('button', { name: 'Join Secret' }).click();
    await inRoom(bob, 'Secret');
    await poll(() => memberOnline(alice, 'bob')).toBe('true');
    // A file dropped on the room is not sent; the room says why.
    await bob.page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['hello'], 'note.txt', { type: 'text/plain' }));
      document.querySelector('.room-conversation')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await poll(() => bob.page.locator('.files-note').textContent()).toMatch(/^Files and videos go to one contact at a time/);

    await alice.page.getByRole('button', { name: 'Make bob the owner' }).click();
    await poll(() => lines(bob)).toEqual(['alice created the room', 'bob joined', 'bob is now the owner']);
    await bob.page.getByRole('button', { name: 'Members' }).click();
    await bob.page.locator('.room-invite').waitFor(); // the owner's powers moved to bob
    expect(await alice.page.locator('.room-invite').isHidden()).toBe(true);
    await alice.page.getByRole('button', { name: 'Leave room' }).click();
    await poll(() => alice.page.locator('.room-gone').textContent()).toBe('You left this room.');
    await poll(() => lines(bob)).toEqual(['alice created the room', 'bob joined', 'bob is now the owner', 'alice left']);
    await poll(() => bob.page.locator('.room-conversation .presence-line').textContent()).toBe('1 member, 1 online · Private');
    await expectNoProblems(alice, bob);
  });
});
