/**
 * The signed-in page: top bar (connection state, who you are, sign out), the banner for a lost or taken-over
 * connection, contacts and rooms beside the open conversation or room (one at a time on a phone), and short
 * notices.
 */
import type { ClosedReason, ConnState } from '../../sdk/index.ts';
import type { Chat } from '../chat.ts';
import { el, replaceChildren } from '../dom.ts';
import { t, type Key } from '../i18n/index.ts';
import { contactsView } from './contacts.ts';
import { conversationView } from './conversation.ts';
import { roomView } from './room.ts';
import { roomsView } from './rooms.ts';
import { languageSwitch } from './language.ts';
import { settingsButton, type AccountActions } from './settings.ts';
import { askPermission, dismissOffer, offerWanted } from '../notify.ts';

/** The small "Turn on notifications" offer, shown after something arrived out of view (never at load). */
function notifyOffer(): HTMLElement {
  const offer = el('div', { class: 'notify-offer', attrs: { hidden: true, role: 'status' } });
  const hide = () => (offer.hidden = true);
  offer.append(
    el('span', { class: 'banner-text', text: t('notify.offer') }),
    el('button', { class: 'primary small', text: t('notify.turnOn'), attrs: { type: 'button' }, on: { click: () => void askPermission().finally(hide) } }),
    el('button', { class: 'secondary small', text: t('notify.notNow'), attrs: { type: 'button' }, on: { click: () => { dismissOffer(); hide(); } } }),
  );
  return offer;
}

export interface ShellActions {
  signOut(): void;
  /** After a takeover: sign in again in this window. */
  signInAgain(): void;
  /** After another tab of this browser took the connection: take it back. */
  useHere(): void;
  /** The language was switched: render the page again. */
  relabel(): void;
  account: AccountActions;
}

const CONN_TEXT: Record<ConnState, Key> = {
  idle: 'conn.idle',
  connecting: 'conn.connecting',
  open: 'conn.open',
  reconnecting: 'conn.reconnecting',
  closed: 'conn.closed',
};

export function shellView(chat: Chat, actions: ShellActions): HTMLElement {
  const pill = el('span', { class: 'conn-pill', attrs: { role: 'status', 'aria-live': 'polite' } });
  const banner = el('div', { class: 'banner', attrs: { hidden: true, role: 'alert' } });
  const toasts = el('div', { class: 'toasts', attrs: { 'aria-live': 'polite' } });
  const offer = notifyOffer();
  const signOut = el('button', { class: 'secondary small', text: t('shell.signOut'), attrs: { type: 'button' }, on: { click: () => actions.signOut() } });

  const root = el('div', { class: 'shell', attrs: { 'data-pane': chat.active ? 'conversation' : 'list' } }, [
    el('header', { class: 'topbar' }, [
      el('span', { class: 'brand' }, [el('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }), el('span', { class: 'brand-name', text: 'Parley' })]),
      pill,
      el('span', { class: 'spacer' }),
      el('span', { class: 'me' }, [el('span', { class: 'muted', text: t('shell.signedInAs') }), el('strong', { text: chat.me })]),
      languageSwitch(actions.relabel),
      settingsButton(chat, actions.account),
      signOut,
    ]),
    banner,
    offer,
    el('div', { class: 'panes' }, [
      el('aside', { class: 'sidebar', attrs: { 'aria-label': t('shell.sidebar') } }, [contactsView(chat), roomsView(chat)]),
      el('main', { class: 'main' }, [conversationView(chat, () => chat.open(undefined)), roomView(chat, () => chat.open(undefined))]),
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
    pill.textContent = t(CONN_TEXT[state]);
    pill.dataset.state = state;
    root.dataset.conn = state;
    root.dataset.offline = String(chat.offline);
    if (chat.offline && state !== 'open' && reason !== 'takeover') {
      pill.textContent = t('conn.offline');
      pill.dataset.state = 'offline';
      showBanner('warn', 'offline', t('shell.offline'));
      return;
    }
    if (state === 'open' || state === 'connecting' || state === 'idle') {
      banner.hidden = true;
      return;
    }
    if (state === 'reconnecting') {
      showBanner('warn', 'reconnecting', t('shell.reconnecting'));
      return;
    }
    switch (reason) {
      case 'takeover':
        showBanner('error', 'takeover', t('shell.takeover', chat.me), { label: t('shell.signInHereAgain'), run: actions.signInAgain });
        break;
      case 'version':
      case 'protocol':
        showBanner('error', 'version', t('shell.outdated'), { label: t('shell.reload'), run: () => location.reload() });
        break;
      case 'replaced': // another client of this same session took the connection (e.g. a tab in another window)
      case 'closed':
        if (chat.steppedBack || reason === 'replaced') {
          showBanner('warn', 'other-tab', t('shell.otherTab'), { label: t('shell.useHere'), run: actions.useHere });
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
    document.title = t('app.title', n);
  };
  chat.on('contacts', title);
  chat.rooms.on('rooms', title);
  title();

  chat.on('notifyOffer', () => {
    if (offerWanted()) offer.hidden = false;
  });

  chat.on('notice', ({ text }) => {
    const toast = el('div', { class: 'toast', text });
    toasts.append(toast);
    setTimeout(() => toast.remove(), 6000);
  });

  return root;
}
