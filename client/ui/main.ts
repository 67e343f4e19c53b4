/**
 * The page's entry point: asks the server whether this browser has a session, then shows either the
 * sign-in screen or the messenger, and moves between them (sign-in, sign-out, session ended, takeover).
 */
import { signOut } from '../sdk/index.ts';
import { Chat } from './chat.ts';
import { el, replaceChildren } from './dom.ts';
import { applyLang, t } from './i18n/index.ts';
import { shellView } from './views/shell.ts';
import { signInView } from './views/signin.ts';
import { receiveFile, resumeKeptTransfers } from './views/file-receive.ts';
import { resumeSending } from './views/file-send.ts';

const root = document.getElementById('app')!;
let chat: Chat | undefined;

/**
 * Who was signed in last in this browser, so that a page opened without the server (the service worker's kept
 * copy) can still show that person's history. Forgotten when they sign out or the session ends.
 */
const ME_KEY = 'parley:me';
function lastMe(): string | undefined {
  try {
    return localStorage.getItem(ME_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}
function rememberMe(name: string | undefined): void {
  try {
    if (name) localStorage.setItem(ME_KEY, name);
    else localStorage.removeItem(ME_KEY);
  } catch {
    // an offline start shows the problem screen instead of the history
  }
}

/** The signed-in name, null when signed out, undefined when the server cannot be reached. */
async function currentSession(): Promise<string | null | undefined> {
  try {
    const res = await fetch('/api/session', { credentials: 'same-origin' });
    if (res.status === 401) return null;
    if (!res.ok) return undefined;
    const body = (await res.json()) as { name?: unknown };
    return typeof body.name === 'string' ? body.name : null;
  } catch {
    return undefined;
  }
}

function showSignIn(opts: { name?: string; notice?: string } = {}): void {
  stopChat();
  rememberMe(undefined);
  replaceChildren(root, signInView({ ...opts, onSignedIn: (name) => void showChat(name), onLanguage: () => showSignIn(opts) }));
  root.querySelector<HTMLInputElement>('[autofocus]')?.focus();
}

function stopChat(): void {
  chat?.stop();
  chat = undefined;
}

/** `offline`: the server could not be reached at load; the history is shown and the page says it is offline. */
async function showChat(name: string, offline = false): Promise<void> {
  stopChat();
  rememberMe(name);
  let c: Chat;
  try {
    c = await Chat.start(name, offline);
  } catch (err) {
    showProblem(t('app.noStore', err instanceof Error ? err.message : String(err)));
    return;
  }
  chat = c;
  // Before any frame of the connection Chat.start opened is handled (nothing awaits in between): the server's
  // `streamResumed` for a transfer this browser was sending must find it.
  resumeSending(c);
  c.streams.on('offer', (s) => {
    receiveFile(c, s);
    c.offered(s.offer.from, s.meta.name);
  });
  showShell(c);
  resumeKeptTransfers(c).catch((err: unknown) => console.warn('could not resume kept transfers', err));
}

/** Renders the signed-in page for `c` (again, after a language switch: same connection, same live cards). */
function showShell(c: Chat): void {
  c.dropViews();
  let deleting = false;
  c.on('conn', ({ state, reason }) => {
    if (state !== 'closed' || chat !== c || deleting) return;
    if (reason === 'session-ended' || reason === 'unauthorized') {
      showSignIn({ name: c.me, notice: t('app.sessionEnded') });
    }
  });
  replaceChildren(root, shellView(c, {
    signOut: () => {
      c.client.close();
      signOut({ baseUrl: '' }).catch(() => undefined).finally(() => showSignIn({ notice: t('app.signedOut') }));
    },
    signInAgain: () => showSignIn({ name: c.me, notice: t('app.signInAgainNotice') }),
    useHere: () => void showChat(c.me),
    relabel: () => showShell(c),
    account: {
      deleting: (on) => (deleting = on),
      deleted: () => showSignIn({ notice: t('app.accountDeleted') }),
    },
  }));
}

function showProblem(text: string): void {
  replaceChildren(root, el('main', { class: 'auth' }, [
    el('div', { class: 'auth-card' }, [
      el('h1', { class: 'brand-large', text: 'Parley' }), // the name, in every language
      el('p', { class: 'form-error', text }),
      el('button', { class: 'primary wide', text: t('app.tryAgain'), attrs: { type: 'button' }, on: { click: () => void boot() } }),
    ]),
  ]));
}

async function boot(): Promise<void> {
  const name = await currentSession();
  const last = lastMe();
  if (name === undefined && last) await showChat(last, true);
  else if (name === undefined) showProblem(t('app.unreachable'));
  else if (name === null) showSignIn();
  else await showChat(name);
}

applyLang();
void boot();
// Keeps the app shell for opening without the server (client/ui/sw.js); an installed Parley needs it too.
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => undefined);
