/**
 * The open conversation: header with presence, the messages in arrival order with their delivery state, and
 * the composer (text, and a button to send a video). Messages are built with textContent only.
 */
import type { Chat } from '../chat.ts';
import { el, icon, replaceChildren } from '../dom.ts';
import { messageKey, type StoredMessage } from '../history.ts';
import { formatBytes, formatTime } from '../words.ts';
import { avatar } from './avatar.ts';
import { sendVideo } from './video-send.ts';

const encoder = new TextEncoder();

function stateLabel(m: StoredMessage): string {
  switch (m.state) {
    case 'sending': return 'Sending…';
    case 'accepted': return 'Sent';
    case 'queued': return `Waiting for ${m.to} to come online`;
    case 'delivered': return 'Delivered';
    case 'failed': return 'Not sent';
  }
}

function textItem(chat: Chat, m: StoredMessage): HTMLLIElement {
  const meta = el('span', { class: 'meta' }, [
    el('time', { text: formatTime(m.ts), attrs: { datetime: new Date(m.ts).toISOString() } }),
    m.dir === 'out' ? el('span', { class: 'state', text: stateLabel(m) }) : null,
  ]);
  const failure = m.state === 'failed'
    ? el('p', { class: 'fail' }, [
      m.error ?? 'The server refused this message.',
      ' ',
      el('button', { class: 'link', text: 'Try again', attrs: { type: 'button' }, on: { click: () => void chat.retry(m) } }),
    ])
    : null;
  return el('li', { class: `msg ${m.dir}`, attrs: { 'data-state': m.state, 'data-id': m.id } }, [
    el('div', { class: 'bubble' }, [el('p', { class: 'text', text: m.text }), meta]),
    failure,
  ]);
}

/** A video after a reload (its bytes are not kept): what it was and what became of it. */
function videoSummary(m: StoredMessage): HTMLElement {
  return el('div', { class: 'video-card past' }, [
    el('div', { class: 'video-title' }, [icon('video'), el('span', { class: 'file-name', text: m.text })]),
    el('p', { class: 'muted', text: `${formatBytes(m.video?.size ?? 0)} · ${m.video?.note ?? ''}` }),
  ]);
}

function item(chat: Chat, m: StoredMessage): HTMLLIElement {
  if (!m.video) return textItem(chat, m);
  const card = chat.liveCards.get(messageKey(m)) ?? videoSummary(m);
  return el('li', { class: `msg ${m.dir} video`, attrs: { 'data-id': m.id } }, [card]);
}

export function conversationView(chat: Chat, onBack: () => void): HTMLElement {
  const root = el('section', { class: 'conversation', attrs: { 'aria-label': 'Conversation' } });
  let items = new Map<string, { seq: number; li: HTMLLIElement }>();
  let list: HTMLOListElement | undefined;
  let presenceLine: HTMLElement | undefined;
  let videoButton: HTMLButtonElement | undefined;
  let composerParts: { input: HTMLTextAreaElement; send: HTMLButtonElement; counter: HTMLElement } | undefined;

  const nearBottom = () => !list || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const toBottom = () => {
    if (list) list.scrollTop = list.scrollHeight;
  };

  /** Adds or replaces one message, keeping arrival order. */
  const upsert = (m: StoredMessage) => {
    if (!list || m.peer !== chat.active) return;
    const key = messageKey(m);
    const stick = nearBottom() || (m.dir === 'out' && !items.has(key));
    const li = item(chat, m);
    const old = items.get(key);
    if (old) {
      old.li.replaceWith(li);
      old.li = li;
    } else {
      // Almost always the newest: walk back from the end to find the place.
      let before: HTMLLIElement | null = null;
      for (const other of [...items.values()].reverse()) {
        if (other.seq < m.seq) break;
        before = other.li;
      }
      list.insertBefore(li, before);
      items.set(key, { seq: m.seq, li });
      if (before) items = new Map([...items.entries()].sort((a, b) => a[1].seq - b[1].seq));
    }
    if (stick) toBottom();
  };

  const updatePresence = () => {
    const key = chat.active;
    if (!key || !presenceLine || !videoButton) return;
    const online = chat.presence.get(key);
    presenceLine.textContent = online === true ? 'Online' : online === false ? 'Offline · messages wait for them on the server' : '';
    presenceLine.className = online ? 'presence-line online' : 'presence-line';
    const connected = chat.conn === 'open';
    videoButton.disabled = !(online === true && connected);
    videoButton.title = !connected ? 'Not connected' : online ? 'Send a video' : 'Videos go only to contacts who are online';
  };

  const updateComposer = () => {
    if (!composerParts) return;
    const { input, send, counter } = composerParts;
    const closed = chat.conn === 'closed';
    const max = chat.client.welcome?.limits.maxTextBytes ?? 16 * 1024;
    const bytes = encoder.encode(input.value).length;
    const over = bytes > max;
    counter.textContent = over ? `Too long by ${formatBytes(bytes - max)}` : '';
    input.disabled = closed;
    send.disabled = closed || over || input.value.trim() === '';
    // Grow with the text up to a few lines (CSSOM assignments are allowed by the CSP).
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  };

  const composer = (key: string, name: string): HTMLElement => {
    const input = el('textarea', { attrs: { rows: '1', placeholder: `Message ${name}`, 'aria-label': `Message ${name}`, enterkeyhint: 'send' } });
    const send = el('button', { class: 'send-button', attrs: { type: 'submit', 'aria-label': 'Send', title: 'Send' } }, [icon('send')]);
    const counter = el('span', { class: 'counter', attrs: { 'aria-live': 'polite' } });
    const fileInput = el('input', { attrs: { type: 'file', accept: 'video/*,audio/*,.mkv,.webm,.mp4,.mov', hidden: true, 'aria-hidden': 'true' } });
    videoButton = el('button', {
      class: 'icon-button video-button', attrs: { type: 'button', 'aria-label': 'Send video' },
      on: { click: () => fileInput.click() },
    }, [icon('video')]);
    fileInput.addEventListener('change', () => {
      const file = fileInput.files?.[0];
      fileInput.value = '';
      if (file) sendVideo(chat, key, file);
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
    return form;
  };

  const render = () => {
    items = new Map();
    composerParts = undefined;
    const key = chat.active;
    const c = key ? chat.contacts.get(key) : undefined;
    if (!key || !c) {
      list = undefined;
      replaceChildren(root, el('div', { class: 'no-conversation' }, [
        el('span', { class: 'brand-mark big', attrs: { 'aria-hidden': 'true' } }),
        el('p', { text: 'Pick a contact to start talking.' }),
        el('p', { class: 'muted', text: 'Messages to someone offline wait on the server until they sign in.' }),
      ]));
      return;
    }
    list = el('ol', { class: 'messages', attrs: { 'aria-label': `Messages with ${c.name}`, 'aria-live': 'polite' } });
    presenceLine = el('span', { class: 'presence-line' });
    const head = el('header', { class: 'conv-head' }, [
      el('button', { class: 'icon-button back', attrs: { type: 'button', 'aria-label': 'Back to contacts' }, on: { click: onBack } }, [icon('back')]),
      avatar(c.name),
      el('div', { class: 'conv-title' }, [el('h2', { text: c.name }), presenceLine]),
      el('button', {
        class: 'icon-button subtle', attrs: { type: 'button', 'aria-label': `Remove ${c.name} from contacts`, title: 'Remove contact' },
        on: { click: () => { if (confirm(`Remove ${c.name} from your contacts? The conversation stays in this browser.`)) void chat.removeContact(key); } },
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
  chat.on('conn', () => {
    updatePresence();
    updateComposer();
  });
  render();
  return root;
}
