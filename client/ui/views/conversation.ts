/**
 * The open conversation: header with presence, the messages in arrival order with their delivery state, and
 * the composer (text, and a button to send a video). Messages are built with textContent only.
 */
import type { Chat } from '../chat.ts';
import { el, icon, replaceChildren } from '../dom.ts';
import { isRoomPeer, messageKey, type StoredMessage } from '../history.ts';
import { t } from '../i18n/index.ts';
import { linkify } from '../linkify.ts';
import { files, formatBytes, formatTime } from '../words.ts';
import { mutedContacts, setMuted } from '../notify.ts';
import { avatar } from './avatar.ts';
import { refreshComposer, type ComposerParts } from './composer.ts';
import { dayLineIfNew, placeDaySeparators } from './day-lines.ts';
import { acceptFileDrops, sendFile } from './file-send.ts';


function stateLabel(m: StoredMessage): string {
  switch (m.state) {
    case 'sending': return t('state.sending');
    case 'accepted': return t('state.accepted');
    case 'queued': return t('state.queued', m.to);
    case 'delivered': return t('state.delivered');
    case 'read': return t('state.read');
    case 'failed': return t('state.failed');
  }
}

function failureLine(chat: Chat, m: StoredMessage): HTMLElement | null {
  return m.state === 'failed'
    ? el('p', { class: 'fail' }, [
      m.error ?? t('conv.refused'),
      ' ',
      el('button', { class: 'link', text: t('conv.tryAgain'), attrs: { type: 'button' }, on: { click: () => void chat.retry(m) } }),
    ])
    : null;
}

function textItem(chat: Chat, m: StoredMessage): HTMLLIElement {
  const meta = el('span', { class: 'meta' }, [
    el('time', { text: formatTime(m.ts), attrs: { datetime: new Date(m.ts).toISOString() } }),
    m.dir === 'out' ? el('span', { class: 'state', text: stateLabel(m) }) : null,
  ]);
  return el('li', { class: `msg ${m.dir}`, attrs: { role: 'article', 'data-state': m.state, 'data-id': m.id, 'data-ts': String(m.ts) } }, [
    el('div', { class: 'bubble' }, [el('p', { class: 'text' }, linkify(m.text)), meta]),
    failureLine(chat, m),
  ]);
}

/** A message's state changed: only its state text and failure line change, the item itself stays. */
function updateTextItem(chat: Chat, li: HTMLLIElement, m: StoredMessage): void {
  li.dataset.state = m.state;
  const state = li.querySelector('.state');
  if (state) state.textContent = stateLabel(m);
  li.querySelector('.fail')?.remove();
  const failure = failureLine(chat, m);
  if (failure) li.append(failure);
}

/** A video after a reload (its bytes are not kept): what it was and what became of it. */
function videoSummary(m: StoredMessage): HTMLElement {
  return el('div', { class: 'video-card past' }, [
    el('div', { class: 'video-title' }, [icon('video'), el('span', { class: 'file-name', text: m.text })]),
    el('p', { class: 'muted', text: `${formatBytes(m.video?.size ?? 0)} · ${m.video?.note ?? ''}` }),
  ]);
}

/** Mutes or unmutes notifications and sound for one contact (remembered in this browser, notify.ts). */
function muteButton(chat: Chat, key: string, name: string): HTMLElement {
  const button = el('button', { class: 'icon-button subtle mute', attrs: { type: 'button' } });
  const show = (muted: boolean) => {
    button.setAttribute('aria-pressed', String(muted));
    button.setAttribute('aria-label', t('notify.mute', name));
    button.title = muted ? t('notify.mutedTitle') : t('notify.muteTitle');
    button.replaceChildren(icon(muted ? 'bellOff' : 'bell'));
  };
  button.addEventListener('click', () => {
    const muted = !mutedContacts(chat.meKey).has(key);
    setMuted(chat.meKey, key, muted);
    show(muted);
  });
  show(mutedContacts(chat.meKey).has(key));
  return button;
}

function item(chat: Chat, m: StoredMessage): HTMLLIElement {
  if (!m.video) return textItem(chat, m);
  const card = chat.liveCards.get(messageKey(m)) ?? videoSummary(m);
  return el('li', { class: `msg ${m.dir} video`, attrs: { role: 'article', 'data-id': m.id, 'data-ts': String(m.ts) } }, [card]);
}

export function conversationView(chat: Chat, onBack: () => void): HTMLElement {
  const root = el('section', { class: 'conversation', attrs: { 'aria-label': t('conv.label') } });
  let items = new Map<string, { seq: number; li: HTMLLIElement }>();
  let list: HTMLOListElement | undefined;
  let presenceLine: HTMLElement | undefined;
  let videoButton: HTMLButtonElement | undefined;
  let composerParts: ComposerParts | undefined;

  // Files dropped or pasted anywhere on the conversation go to the contact shown, when the button would.
  acceptFileDrops(root, () => videoButton !== undefined && !videoButton.disabled, (file) => {
    if (chat.active) sendFile(chat, chat.active, file);
  });

  const nearBottom = () => !list || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  // Cards grow after they are placed (a video starts playing, a photo loads, a file card gets its buttons):
  // while the person was at the bottom, the list follows them, so the card stays in view.
  let pinned = true;
  let growth: ResizeObserver | undefined;
  const toBottom = () => {
    if (list) list.scrollTop = list.scrollHeight;
  };

  /** Adds or replaces one message, keeping arrival order. */
  const upsert = (m: StoredMessage) => {
    if (!list || m.peer !== chat.active) return;
    const key = messageKey(m);
    const stick = nearBottom() || (m.dir === 'out' && !items.has(key));
    const old = items.get(key);
    if (old) {
      // Changed in place, so assistive technology does not announce it again as a new message.
      if (!m.video) updateTextItem(chat, old.li, m);
      else if (!old.li.contains(chat.liveCards.get(key) ?? null)) old.li.replaceChildren(item(chat, m).firstChild!);
    } else {
      const li = item(chat, m);
      // Almost always the newest: walk back from the end to find the place.
      let before: HTMLLIElement | null = null;
      for (const other of [...items.values()].reverse()) {
        if (other.seq < m.seq) break;
        before = other.li;
      }
      list.insertBefore(li, before);
      growth?.observe(li);
      items.set(key, { seq: m.seq, li });
      if (before) {
        items = new Map([...items.entries()].sort((a, b) => a[1].seq - b[1].seq));
        placeDaySeparators(list);
      } else {
        // The usual case, appended at the end: a day line only if it starts a new day.
        dayLineIfNew(list, li, [...items.values()].at(-2)?.li, m.ts);
      }
    }
    if (stick) toBottom();
  };

  const updatePresence = () => {
    const key = chat.active;
    if (!key || !presenceLine || !videoButton) return;
    const online = chat.presence.get(key);
    presenceLine.textContent = online === true ? t('conv.online') : online === false ? t('conv.offline') : '';
    presenceLine.className = online ? 'presence-line online' : 'presence-line';
    if (chat.typingNow.has(key)) {
      presenceLine.textContent = t('conv.typing');
      presenceLine.className = 'presence-line typing';
    }
    const connected = chat.conn === 'open';
    videoButton.disabled = !(online === true && connected);
    videoButton.title = !connected ? files().notConnected : online ? files().sendButton : files().sendDisabledOffline;
  };

  const updateComposer = () => {
    if (composerParts) refreshComposer(composerParts, chat);
  };

  const composer = (key: string, name: string): HTMLElement => {
    const input = el('textarea', { attrs: { rows: '1', placeholder: t('conv.placeholder', name), 'aria-label': t('conv.placeholder', name), enterkeyhint: 'send' } });
    const send = el('button', { class: 'send-button', attrs: { type: 'submit', 'aria-label': t('conv.send'), title: t('conv.send') } }, [icon('send')]);
    const counter = el('span', { class: 'counter', attrs: { 'aria-live': 'polite' } });
    const fileInput = el('input', { attrs: { type: 'file', multiple: true, hidden: true, 'aria-hidden': 'true' } });
    videoButton = el('button', {
      class: 'icon-button video-button file-button', attrs: { type: 'button', 'aria-label': files().sendButton },
      on: { click: () => fileInput.click() },
    }, [icon('clip')]);
    fileInput.addEventListener('change', () => {
      const picked = [...(fileInput.files ?? [])];
      fileInput.value = '';
      for (const file of picked) sendFile(chat, key, file);
    });

    composerParts = { input, send, counter };
    const form = el('form', { class: 'composer' }, [fileInput, videoButton, input, send, counter]);
    const submit = () => {
      const text = input.value;
      if (text.trim() === '' || send.disabled) return;
      input.value = '';
      updateComposer();
      void chat.send(key, text);
      input.focus();
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit();
    });
    input.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter breaks the line; not while an input method is composing (CJK input).
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      }
    });
    input.addEventListener('input', updateComposer);
    input.addEventListener('input', () => chat.typing(key, input.value.trim() !== ''));
    input.addEventListener('blur', () => chat.typing(key, false));
    return form;
  };

  const render = () => {
    items = new Map();
    composerParts = undefined;
    const key = chat.active;
    // A room's conversation is views/room.ts.
    root.hidden = key !== undefined && isRoomPeer(key);
    const c = key ? chat.contacts.get(key) : undefined;
    if (root.hidden) {
      list = undefined;
      replaceChildren(root);
      return;
    }
    if (!key || !c) {
      list = undefined;
      replaceChildren(root, el('div', { class: 'no-conversation' }, [
        el('span', { class: 'brand-mark big', attrs: { 'aria-hidden': 'true' } }),
        el('p', { text: t('conv.pick') }),
        el('p', { class: 'muted', text: t('conv.pickHint') }),
      ]));
      return;
    }
    // A log (so its items are articles, day lines headings): reachable by keyboard (it scrolls), labelled, and
    // only additions are announced.
    list = el('ol', { class: 'messages', attrs: { role: 'log', tabindex: '0', 'aria-label': t('conv.messagesWith', c.name), 'aria-live': 'polite', 'aria-relevant': 'additions' } });
    growth?.disconnect();
    pinned = true;
    growth = new ResizeObserver(() => {
      if (pinned) toBottom();
    });
    list.addEventListener('scroll', () => (pinned = nearBottom()), { passive: true });
    presenceLine = el('span', { class: 'presence-line' });
    const head = el('header', { class: 'conv-head' }, [
      el('button', { class: 'icon-button back', attrs: { type: 'button', 'aria-label': t('conv.back') }, on: { click: onBack } }, [icon('back')]),
      avatar(c.name),
      el('div', { class: 'conv-title' }, [el('h2', { text: c.name }), presenceLine]),
      muteButton(chat, key, c.name),
      el('button', {
        class: 'icon-button subtle', attrs: { type: 'button', 'aria-label': t('conv.remove', c.name), title: t('conv.removeTitle') },
        on: { click: () => { if (confirm(t('conv.removeConfirm', c.name))) void chat.removeContact(key); } },
      }, [icon('trash')]),
    ]);
    replaceChildren(root, head, list, composer(key, c.name));
    updatePresence();
    updateComposer();
    const target = list;
    void chat.history.conversation(key).then((messages) => {
      if (list !== target) return; // another conversation was opened meanwhile
      for (const m of messages) upsert(m);
      toBottom();
    });
  };

  chat.on('active', render);
  chat.on('message', ({ m }) => upsert(m));
  chat.on('presence', ({ key }) => {
    if (key === chat.active) updatePresence();
  });
  chat.on('typing', ({ key }) => {
    if (key === chat.active) updatePresence();
  });
  chat.on('conn', () => {
    updatePresence();
    updateComposer();
  });
  render();
  return root;
}
