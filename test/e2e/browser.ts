/**
 * Shared by the browser tests: Debian's Chromium through playwright-core (never a downloaded browser), the
 * client built into a temp directory, a self-signed certificate, and a `User` that drives one page in its own
 * browser context and records everything the page complains about (CSP violations, console errors, uncaught
 * exceptions), so a test can assert there were none.
 */
import { execFile } from 'node:child_process';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { buildClient } from '../../scripts/build-client.mjs';

const run = promisify(execFile);

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/** Builds the page into `dir/dist` (unminified is not needed: the tests read the DOM, not the code). */
export async function buildInto(dir: string): Promise<string> {
  const { outDir } = await buildClient({ outDir: join(dir, 'dist'), quiet: true, sourcemap: false });
  return outDir;
}

/** A one-day self-signed certificate for localhost and 127.0.0.1, made with openssl in `dir`. */
export async function selfSignedCert(dir: string): Promise<{ TLS_CERT: string; TLS_KEY: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  return { TLS_CERT: cert, TLS_KEY: key };
}

export const PASSWORD = 'a long enough password';

/**
 * `expect.poll` with room for a loaded two-core machine running several browser test files at once (vitest's
 * default of one second is for in-process work). Polling a page's state is not a sleep: it returns as soon as
 * the state is reached.
 */
export function poll<T>(fn: () => T | Promise<T>, timeout = 15_000): ReturnType<typeof expect.poll<T>> {
  return expect.poll(fn, { timeout, interval: 50 });
}

/** One person in one browser context (own cookies, own IndexedDB). */
export class User {
  readonly problems: string[] = [];
  page!: Page;

  private constructor(readonly context: BrowserContext, readonly baseUrl: string, readonly name: string) {}

  /** `query` (e.g. `?test-recv-rate=…`) is added to the page's URL: see client/ui/knobs.ts. */
  static async open(browser: Browser, baseUrl: string, name: string, opts: { viewport?: { width: number; height: number }; query?: string } = {}): Promise<User> {
    const context = await browser.newContext({
      ignoreHTTPSErrors: baseUrl.startsWith('https:'),
      viewport: opts.viewport ?? { width: 1100, height: 760 },
    });
    const u = new User(context, baseUrl, name);
    await u.newPage(opts.query);
    return u;
  }

  /** Opens a fresh page in this context (same cookies and storage), watching it for problems. */
  async newPage(query = ''): Promise<Page> {
    const page = await this.context.newPage();
    // Injected through the DevTools protocol, so the page's CSP does not apply to this listener itself.
    await page.addInitScript(() => {
      const w = window as unknown as { __csp: string[] };
      w.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => w.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    page.on('console', (m: ConsoleMessage) => {
      if (m.type() !== 'error') return;
      // Asking whether this browser is signed in is answered 401 when it is not: expected, not a problem.
      if (/\/api\/session$/.test(m.location().url) && m.text().includes('401')) return;
      this.problems.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (err) => this.problems.push(`pageerror: ${err.message}`));
    this.page = page;
    await page.goto(this.baseUrl + '/' + query);
    return page;
  }

  /** CSP violations seen by the current page plus console errors and exceptions of every page so far. */
  async allProblems(): Promise<string[]> {
    const csp = this.page.isClosed() ? [] : await this.page.evaluate(() => (window as unknown as { __csp: string[] }).__csp);
    return [...csp.map((c) => `csp: ${c}`), ...this.problems];
  }

  async signUp(password = PASSWORD): Promise<void> {
    const p = this.page;
    await p.getByRole('tab', { name: 'Create account' }).click();
    await p.fill('#auth-name', this.name);
    await p.fill('#auth-password', password);
    await p.click('.auth-form button[type=submit]');
    await this.online();
  }

  async signIn(password = PASSWORD): Promise<void> {
    const p = this.page;
    await p.fill('#auth-name', this.name);
    await p.fill('#auth-password', password);
    await p.click('.auth-form button[type=submit]');
    await this.online();
  }

  /** Waits for the messenger with a live connection. */
  async online(): Promise<void> {
    await this.page.locator('.conn-pill[data-state="open"]').waitFor();
  }

  async addContact(name: string): Promise<void> {
    await this.page.fill('.add-contact input', name);
    await this.page.press('.add-contact input', 'Enter');
    await this.page.locator(`.conv-head h2:text-is("${name}")`).waitFor();
  }

  async openConversation(name: string): Promise<void> {
    await this.page.locator(`.contact-name:text-is("${name}")`).click();
    await this.page.locator(`.conv-head h2:text-is("${name}")`).waitFor();
  }

  async send(text: string): Promise<void> {
    await this.page.fill('.composer textarea', text);
    await this.page.press('.composer textarea', 'Enter');
  }

  /** Texts of the open conversation, in display order. */
  texts(): Promise<string[]> {
    return this.page.locator('.messages .msg .text').allTextContents();
  }

  /** [text, state] of this user's own messages in the open conversation. */
  outgoing(): Promise<[string, string][]> {
    return this.page.locator('.messages .msg.out:not(.video)').evaluateAll((lis) =>
      lis.map((li) => [li.querySelector('.text')?.textContent ?? '', li.getAttribute('data-state') ?? '']));
  }

  unread(contact: string): Promise<string | null> {
    return this.page.locator(`.contact:has(.contact-name:text-is("${contact}")) .unread`).textContent({ timeout: 2000 }).catch(() => null);
  }

  close(): Promise<void> {
    return this.context.close();
  }
}

/**
 * A TCP pass-through between the browser and the server that the test can cut, to make a network drop. Test
 * double of "the network": it models a connection that breaks (every socket reset, new ones refused while
 * down) and comes back; it does not model slowness or partial loss. The browser's Host and Origin headers
 * name the proxy, which the server accepts as its own origin, exactly as behind a TCP load balancer.
 */
export class CuttableLink {
  private readonly sockets = new Set<Socket>();
  private down = false;
  private constructor(private readonly server: Server, readonly url: string) {}

  static async to(target: { url: string }): Promise<CuttableLink> {
    const t = new URL(target.url);
    let link: CuttableLink | undefined;
    const server = createServer((client) => {
      if (!link || link.down) {
        client.destroy();
        return;
      }
      const upstream = createConnection({ host: t.hostname, port: Number(t.port) });
      for (const s of [client, upstream]) {
        link.sockets.add(s);
        s.on('close', () => link?.sockets.delete(s));
        s.on('error', () => undefined); // a reset is what this double exists for; the close event follows
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    link = new CuttableLink(server, `${t.protocol}//127.0.0.1:${port}`);
    return link;
  }

  /** Resets every connection and refuses new ones until `restore()`. */
  cut(): void {
    this.down = true;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  restore(): void {
    this.down = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
