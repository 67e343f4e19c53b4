/**
 * Shared by the browser tests: Debian's Chromium through playwright-core (never a downloaded browser), the
 * client built into a temp directory, a self-signed certificate, and a `User` that drives one page in its own
 * browser context and records everything the page complains about (CSP violations, console errors, uncaught
 * exceptions), so a test can assert there were none; `browserSuite()` registers the hooks a test file needs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { buildClient } from '../../scripts/build-client.mjs';
import { Harness } from '../support/harness.ts';

const run = promisify(execFile);

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** `extraArgs`: more Chromium switches (e.g. a tag that finds the browser's processes in /proc). */
export function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', ...extraArgs,
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
  /**
   * `permissions`: granted to the page's origin (e.g. `notifications`); `init`: a script run in every page of the
   * context before the page's own (e.g. to observe what the page does with a browser API).
   */
  static async open(browser: Browser, baseUrl: string, name: string, opts: { viewport?: { width: number; height: number }; query?: string; locale?: string; colorScheme?: 'light' | 'dark'; permissions?: string[]; init?: () => void } = {}): Promise<User> {
    const context = await browser.newContext({
      ignoreHTTPSErrors: baseUrl.startsWith('https:'),
      viewport: opts.viewport ?? { width: 1100, height: 760 },
      locale: opts.locale ?? 'en-US', // navigator.languages and Accept-Language; the page picks its words from it
      colorScheme: opts.colorScheme ?? 'light',
    });
    if (opts.permissions) await context.grantPermissions(opts.permissions, { origin: baseUrl });
    if (opts.init) await context.addInitScript(opts.init);
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
      // Looking up a contact name that has no account is answered 404: expected when a test adds one.
      if (/\/api\/contacts\/[^/]+$/.test(m.location().url) && m.text().includes('404')) return;
      // Chromium refuses to install a service worker from a server whose certificate it does not trust, even
      // with certificate errors ignored for the page: expected in the self-signed HTTPS test (the page works on
      // without one; it just cannot open offline). Chromium words it as an SSL error or, at times, an unknown one.
      if (this.baseUrl.startsWith('https:') && /error occurred when fetching the script/.test(m.text())) return;
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
  /** Where connections go; set by `to`, or later for a link opened first (see `open`). */
  target: URL | undefined;
  private constructor(private readonly server: Server, readonly url: string) {}

  static async to(target: { url: string }): Promise<CuttableLink> {
    const link = await CuttableLink.open(new URL(target.url).protocol);
    link.target = new URL(target.url);
    return link;
  }

  /**
   * A link listening before its target exists, so the server behind it can be told the link's origin
   * (the server accepts only its own origin or configured ones, never what `Host` says).
   */
  static async open(protocol = 'http:'): Promise<CuttableLink> {
    let link: CuttableLink | undefined;
    const server = createServer((client) => {
      const t = link?.target;
      if (!link || link.down || !t) {
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
    link = new CuttableLink(server, `${protocol}//127.0.0.1:${port}`);
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

/** What a browser test file shares: the built page, one Chromium, its server harness, and what each test opened. */
export interface BrowserSuite {
  readonly h: Harness;
  /** Users a test opened: closed after each test. */
  readonly users: User[];
  /** Links a test opened: closed after each test. */
  readonly links: CuttableLink[];
  /** Chromium, launched before the first test. */
  readonly browser: Browser;
  /** The built page's directory (the servers' CLIENT_DIR). */
  readonly dist: string;
}

/**
 * Registers the hooks every browser test file needs: build the page into a temp directory and launch Chromium
 * before the tests; after each test close its users and links and stop its servers; at the end close Chromium
 * and remove the build.
 */
export function browserSuite(): BrowserSuite {
  const h = new Harness();
  const users: User[] = [];
  const links: CuttableLink[] = [];
  let browser: Browser | undefined;
  let dist: string | undefined;
  let buildDir: string | undefined;
  beforeAll(async () => {
    buildDir = mkdtempSync(join(tmpdir(), 'parley-e2e-build-'));
    [dist, browser] = await Promise.all([buildInto(buildDir), launchBrowser()]);
  }, 120_000);
  afterEach(async () => {
    await Promise.all(users.splice(0).map((u) => u.close().catch(() => undefined)));
    await Promise.all(links.splice(0).map((l) => l.close()));
    await h.cleanup();
  });
  afterAll(async () => {
    await browser?.close();
    if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  });
  return {
    h, users, links,
    get browser() {
      if (!browser) throw new Error('the browser is launched in beforeAll');
      return browser;
    },
    get dist() {
      if (!dist) throw new Error('the page is built in beforeAll');
      return dist;
    },
  };
}
