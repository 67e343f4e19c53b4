/**
 * The signed-in page: top bar (connection state, who you are, sign out), the banner for a lost or taken-over
 * connection, contacts beside the conversation (one at a time on a phone), and short notices.
 */
import type { ClosedReason, ConnState } from '../../sdk/index.ts';
import type { Chat } from '../chat.ts';
import { el, replaceChildren } from '../dom.ts';
import { contactsView } from './contacts.ts';
import { conversationView } from './conversation.ts';

export interface ShellActions {
  signOut(): void;
  /** After a takeover: sign in again in this window. */
  signInAgain(): void;
  /** After another tab of this browser took the connection: take it back. */
  useHere(): void;
}

const CONN_TEXT: Record<ConnState, string> = {
  idle: 'Starting…',
  connecting: 'Connecting…',
  open: 'Online',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
};

export function shellView(chat: Chat, actions: ShellActions): HTMLElement {
  const pill = el('span', { class: 'conn-pill', attrs: { role: 'status', 'aria-live': 'polite' } });
  const banner = el('div', { class: 'banner', attrs: { hidden: true, role: 'alert' } });
  const toasts = el('div', { class: 'toasts', attrs: { 'aria-live': 'polite' } });
  const signOut = el('button', { class: 'secondary small', text: 'Sign out', attrs: { type: 'button' }, on: { click: () => actions.signOut() } });

  const root = el('div', { class: 'shell', attrs: { 'data-pane': chat.active ? 'conversation' : 'list' } }, [
    el('header', { class: 'topbar' }, [
      el('span', { class: 'brand' }, [el('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }), 'Parley']),
      pill,
      el('span', { class: 'spacer' }),
      el('span', { class: 'me' }, [el('span', { class: 'muted', text: 'Signed in as ' }), el('strong', { text: chat.me })]),
      signOut,
    ]),
    banner,
    el('div', { class: 'panes' }, [
      el('aside', { class: 'sidebar', attrs: { 'aria-label': 'Contacts' } }, [contactsView(chat)]),
      el('main', { class: 'main' }, [conversationView(chat, () => chat.open(undefined))]),
    ]),
    toasts,
  ]);

  const showBanner = (kind: 'warn' | 'error', reason: string, text: string, action?: { label: string; run: () => void }) => {
    banner.className = `banner ${kind}`;
    banner.dataset.reason = reason;
    replaceChildren(banner,
      el('span', { class: 'banner-text', text }),
      action ? el('button', { class: 'primary small', text: action.label, attrs: { type: 'button' }, on: { click: action.run } }) : null,
    );
    banner.hidden = false;
  };

  const onConn = (state: ConnState, reason?: ClosedReason) => {
    pill.textContent = CONN_TEXT[state];
    pill.dataset.state = state;
    root.dataset.conn = state;
    if (state === 'open' || state === 'connecting' || state === 'idle') {
      banner.hidden = true;
      return;
    }
    if (state === 'reconnecting') {
      showBanner('warn', 'reconnecting', 'Connection lost. Reconnecting… Messages you write now are sent when it is back.');
      return;
    }
    switch (reason) {
      case 'takeover':
        showBanner('error', 'takeover', `Parley was opened with the name ${chat.me} somewhere else, so this window stopped.`, { label: 'Sign in here again', run: actions.signInAgain });
        break;
      case 'version':
      case 'protocol':
        showBanner('error', 'version', 'This page is out of date for the server. Reload to get the new version.', { label: 'Reload', run: () => location.reload() });
        break;
      case 'replaced': // another client of this same session took the connection (e.g. a tab in another window)
      case 'closed':
        if (chat.steppedBack || reason === 'replaced') {
          showBanner('warn', 'other-tab', 'Parley is open in another tab of this browser. Only one tab can be connected at a time.', { label: 'Use here', run: actions.useHere });
        }
        break;
      default:
        break; // session-ended and unauthorized go back to the sign-in screen (main.ts)
    }
  };
  chat.on('conn', ({ state, reason }) => onConn(state, reason));
  onConn(chat.conn, chat.client.closedReason);

  chat.on('active', ({ key }) => {
    root.dataset.pane = key ? 'conversation' : 'list';
  });
  const title = () => {
    const n = chat.unreadTotal;
    document.title = n > 0 ? `(${n}) Parley` : 'Parley';
  };
  chat.on('contacts', title);
  title();

  chat.on('notice', ({ text }) => {
    const toast = el('div', { class: 'toast', text });
    toasts.append(toast);
    setTimeout(() => toast.remove(), 6000);
  });

  return root;
}
