/**
 * The page's entry point: asks the server whether this browser has a session, then shows either the
 * sign-in screen or the messenger, and moves between them (sign-in, sign-out, session ended, takeover).
 */
import { signOut } from '../sdk/index.ts';
import { Chat } from './chat.ts';
import { el, replaceChildren } from './dom.ts';
import { shellView } from './views/shell.ts';
import { signInView } from './views/signin.ts';
import { receiveVideo } from './views/video-receive.ts';

const root = document.getElementById('app')!;
let chat: Chat | undefined;

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
  replaceChildren(root, signInView({ ...opts, onSignedIn: (name) => void showChat(name) }));
  root.querySelector<HTMLInputElement>('[autofocus]')?.focus();
}

function stopChat(): void {
  chat?.stop();
  chat = undefined;
}

async function showChat(name: string): Promise<void> {
  stopChat();
  let c: Chat;
  try {
    c = await Chat.start(name);
  } catch (err) {
    showProblem(`This browser could not open its message store (${err instanceof Error ? err.message : String(err)}). Private windows of some browsers do not allow it.`);
    return;
  }
  chat = c;
  c.streams.on('offer', (s) => receiveVideo(c, s));
  c.on('conn', ({ state, reason }) => {
    if (state !== 'closed' || chat !== c) return;
    if (reason === 'session-ended' || reason === 'unauthorized') {
      showSignIn({ name: c.me, notice: 'Your session ended. Sign in again to continue.' });
    }
  });
  replaceChildren(root, shellView(c, {
    signOut: () => {
      c.client.close();
      signOut({ baseUrl: '' }).catch(() => undefined).finally(() => showSignIn({ notice: 'You signed out. Your conversations stay in this browser for when you come back.' }));
    },
    signInAgain: () => showSignIn({ name: c.me, notice: 'Enter your password to use Parley in this window. The other window will be signed out.' }),
    useHere: () => void showChat(c.me),
  }));
}

function showProblem(text: string): void {
  replaceChildren(root, el('main', { class: 'auth' }, [
    el('div', { class: 'auth-card' }, [
      el('h1', { class: 'brand-large', text: 'Parley' }),
      el('p', { class: 'form-error', text }),
      el('button', { class: 'primary wide', text: 'Try again', attrs: { type: 'button' }, on: { click: () => void boot() } }),
    ]),
  ]));
}

async function boot(): Promise<void> {
  const name = await currentSession();
  if (name === undefined) showProblem('Cannot reach the Parley server. Check your connection and try again.');
  else if (name === null) showSignIn();
  else await showChat(name);
}

void boot();
