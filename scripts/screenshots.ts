/**
 * Screenshots of the main screens for README.md, made with Debian's Chromium against a real server on a free
 * port with throwaway data: sign-in, a conversation, a video playing while it arrives, a photo, an audio file
 * and a file card, and a taken-over window, at desktop and phone sizes; then the sign-in, a conversation, the
 * contacts and the settings panel again in a zh-CN browser (`*-zh-CN.png`).
 *
 *   npx tsx scripts/screenshots.ts [outDir]      (default docs/screenshots)
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startServer } from '../server/app.ts';
import { loadConfig } from '../server/config.ts';
import { buildClient } from './build-client.mjs';
import { makeFixtures } from './make-fixtures.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 800 };
const PASSWORD = 'screenshot password';

async function newUser(browser: Browser, url: string, viewport: { width: number; height: number }, query = '', locale = 'en-US'): Promise<Page> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, colorScheme: 'light', locale });
  // As after "Not now" on the notifications offer (which would otherwise sit over every conversation shot).
  await context.addInitScript(() => localStorage.setItem('parley:notify-offer', 'dismissed'));
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  await page.goto(`${url}/${query}`);
  return page;
}

async function signUp(page: Page, name: string): Promise<void> {
  await page.locator('.tab').nth(1).click(); // "Create account", in any language
  await page.fill('#auth-name', name);
  await page.fill('#auth-password', PASSWORD);
  await page.click('.auth-form button[type=submit]');
  await page.locator('.conn-pill[data-state="open"]').waitFor();
}

async function addContact(page: Page, name: string): Promise<void> {
  await page.fill('.add-contact input', name);
  await page.press('.add-contact input', 'Enter');
  await page.locator(`.conv-head h2:text-is("${name}")`).waitFor();
}

async function openConversation(page: Page, name: string): Promise<void> {
  await page.locator(`.contact-name:text-is("${name}")`).click();
  await page.locator(`.conv-head h2:text-is("${name}")`).waitFor();
}

/** Sends and waits for the message to reach `state` (delivered also counts when the other has it open: read). */
async function say(page: Page, text: string, state = 'delivered'): Promise<void> {
  const before = await page.locator('.msg.out').count();
  await page.fill('.composer textarea', text);
  await page.press('.composer textarea', 'Enter');
  const states = state === 'delivered' ? ['delivered', 'read'] : [state];
  await page.locator(`.msg.out >> nth=${before}`).and(page.locator(states.map((s) => `.msg[data-state="${s}"]`).join(', '))).waitFor();
}

async function shoot(page: Page, outDir: string, name: string): Promise<void> {
  await page.evaluate(() => document.fonts.ready);
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path });
  console.log(path);
}

/** The same screens in a zh-CN browser: the page speaks Chinese from the browser's language alone. */
async function chineseShots(browser: Browser, url: string, outDir: string): Promise<void> {
  const signIn = await newUser(browser, url, PHONE, '', 'zh-CN');
  await signIn.locator('#auth-name').waitFor();
  await shoot(signIn, outDir, 'sign-in-phone-zh-CN');
  await signIn.context().close();

  const mei = await newUser(browser, url, DESKTOP, '', 'zh-CN');
  const hao = await newUser(browser, url, DESKTOP, '', 'zh-CN');
  const lin = await newUser(browser, url, DESKTOP, '', 'zh-CN');
  await signUp(mei, '小美');
  await signUp(hao, '阿浩');
  await signUp(lin, '林老师');
  await addContact(lin, '小美');
  await say(lin, '周六的读书会还去吗？');
  await addContact(mei, '阿浩');
  await say(mei, '阿浩，你到家了吗？');
  await openConversation(hao, '小美');
  await say(hao, '到了，谢谢！火车晚点了一会儿。');
  await say(hao, '昨晚的音乐会我录下来了，要看吗？');
  await say(mei, '要！发给我吧。');
  await mei.locator('.msg.in').nth(1).waitFor();
  await shoot(mei, outDir, 'conversation-desktop-zh-CN');
  await mei.setViewportSize(PHONE);
  await shoot(mei, outDir, 'conversation-phone-zh-CN');
  await mei.locator('.conv-head .back').click();
  await shoot(mei, outDir, 'contacts-phone-zh-CN');
  await mei.setViewportSize(DESKTOP);
  await mei.click('.settings-button');
  await mei.locator('dialog.settings[open]').waitFor();
  await shoot(mei, outDir, 'settings-desktop-zh-CN');
  for (const p of [mei, hao, lin]) await p.context().close();
}

export async function screenshots(outDir = join(ROOT, 'docs/screenshots')): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'parley-shots-'));
  const [{ outDir: dist }, fixtures] = await Promise.all([
    buildClient({ outDir: join(work, 'dist'), quiet: true }),
    makeFixtures(join(ROOT, 'test/.tmp/fixtures')),
  ]);
  const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: join(work, 'data'), SCRYPT_COST: '10', LOG_LEVEL: 'warn', CLIENT_DIR: dist }, []));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--hide-scrollbars'],
  });
  try {
    const url = server.url;
    // Sign-in, both sizes.
    for (const [size, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const p = await newUser(browser, url, viewport);
      await p.locator('#auth-name').waitFor();
      await shoot(p, outDir, `sign-in-${size}`);
      await p.context().close();
    }

    // The recipients of the video take it slowly (client/ui/knobs.ts), so it is mid-way in the pictures.
    const slow = '?test-recv-rate=250000&test-recv-window=262144';
    // A conversation: maya talks with sam; jonas is offline with a message waiting; lee wrote while away.
    const maya = await newUser(browser, url, DESKTOP, slow);
    const sam = await newUser(browser, url, DESKTOP);
    const lee = await newUser(browser, url, DESKTOP, slow);
    await signUp(maya, 'maya');
    await signUp(sam, 'sam');
    await signUp(lee, 'lee');
    const jonas = await newUser(browser, url, DESKTOP);
    await signUp(jonas, 'jonas');
    await jonas.context().close();
    await addContact(lee, 'maya');
    await say(lee, 'Are we still on for Saturday?');
    await say(lee, 'I can bring the tent.');
    await addContact(maya, 'jonas');
    await say(maya, 'Jonas, the photos from the trip are ready!', 'queued');
    await addContact(maya, 'sam');
    await say(maya, 'Hi Sam! Did you get home all right?');
    await openConversation(sam, 'maya');
    await say(sam, 'Yes, thanks. The train was late but fine.');
    await say(sam, 'I recorded the concert last night, want to see it?');
    await say(maya, 'Yes please! Send it over.');
    await say(maya, 'The long version if you have it.\nI missed the encore.');
    await maya.locator('.msg.in').nth(1).waitFor();
    await shoot(maya, outDir, 'conversation-desktop');

    // The same window at phone size: one pane at a time.
    const mayaPhone = maya;
    await maya.setViewportSize(PHONE);
    await shoot(maya, outDir, 'conversation-phone');
    await maya.getByRole('button', { name: 'Back to contacts' }).click();
    await shoot(maya, outDir, 'contacts-phone');
    await openConversation(maya, 'sam');

    // A video, watched while it arrives, on the phone and on a desktop.
    const sendVideo = async (to: string) => {
      await openConversation(sam, to);
      const [chooser] = await Promise.all([sam.waitForEvent('filechooser'), sam.getByRole('button', { name: 'Send a file' }).click()]);
      await chooser.setFiles(fixtures.longFmp4.path);
      await sam.locator('.video-card[data-video="out"][data-state="offered"]').last().waitFor();
    };
    const watch = async (page: Page) => {
      await page.locator('.video-card[data-video="in"]').getByRole('button', { name: 'Watch' }).click();
      await page.waitForFunction(() => (document.querySelector<HTMLVideoElement>('.video-card[data-video="in"] video')?.currentTime ?? 0) > 3);
      await page.locator('.video-card[data-video="in"]').evaluate((card) => card.scrollIntoView({ block: 'end' }));
    };
    await sendVideo('maya');
    await mayaPhone.locator('.video-card[data-video="in"]').waitFor();
    await mayaPhone.locator('.video-card[data-video="in"]').scrollIntoViewIfNeeded();
    await shoot(mayaPhone, outDir, 'video-offer-phone');
    await watch(mayaPhone);
    await shoot(mayaPhone, outDir, 'video-playing-phone');

    await addContact(sam, 'lee');
    await sendVideo('lee');
    await openConversation(lee, 'sam');
    await watch(lee);
    await shoot(lee, outDir, 'video-playing-desktop');
    await sam.locator('.video-card[data-video="out"][data-state="sending"]').last().waitFor();
    await shoot(sam, outDir, 'video-sending-desktop');

    // Files of other kinds: a photo (thumbnail), a song (audio player), a document (a card with Save).
    await maya.setViewportSize(DESKTOP);
    await openConversation(maya, 'sam');
    await openConversation(sam, 'maya');
    for (const [f, button] of [[fixtures.jpeg, 'Receive'], [fixtures.mp3, 'Listen'], [fixtures.pdf, 'Receive']] as const) {
      const [chooser] = await Promise.all([sam.waitForEvent('filechooser'), sam.getByRole('button', { name: 'Send a file' }).click()]);
      await chooser.setFiles(f.path);
      const card = maya.locator('.file-card.incoming').last();
      await card.locator(`.file-name:text-is("${f.file}")`).waitFor();
      await card.getByRole('button', { name: button }).click();
      await maya.locator('.file-card.incoming[data-state="done"]').last().locator(`.file-name:text-is("${f.file}")`).waitFor();
    }
    await maya.locator('.file-card.incoming').last().evaluate((card) => card.scrollIntoView({ block: 'end' }));
    await shoot(maya, outDir, 'files-desktop');

    // lee signs in somewhere else: this window stops and says so.
    const leeElsewhere = await newUser(browser, url, PHONE);
    await leeElsewhere.fill('#auth-name', 'lee');
    await leeElsewhere.fill('#auth-password', PASSWORD);
    await leeElsewhere.click('.auth-form button[type=submit]');
    await lee.locator('.banner[data-reason="takeover"]').waitFor();
    await shoot(lee, outDir, 'takeover-desktop');

    await chineseShots(browser, url, outDir);
  } finally {
    await browser.close();
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  screenshots(process.argv[2]).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
