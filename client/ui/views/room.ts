/**
 * An open room: header with its members online, the messages in the room's one order (`rseq`) with their
 * senders, the room's own lines (joined, left, removed, new owner) and day lines, "delivered to k of n" under
 * your own messages with who has it on demand, the members panel (presence; the owner invites, removes and
 * hands over), and the composer. Files stay one-to-one: the file button, or a dropped file, says so.
 */
import type { RoomLineName } from '../../../shared/protocol.ts';
import type { Chat } from '../chat.ts';
import { el, icon, replaceChildren } from '../dom.ts';
import { isRoomPeer, messageKey, type StoredMessage } from '../history.ts';
import { t } from '../i18n/index.ts';
import { linkify } from '../linkify.ts';
import { formatTime } from '../words.ts';
import { avatar } from './avatar.ts';
import { refreshComposer, type ComposerParts } from './composer.ts';
import { dayLineIfNew, placeDaySeparators } from './day-lines.ts';
import { acceptFileDrops } from './file-send.ts';
import { roomMembersView } from './room-members.ts';


const LINE: Record<RoomLineName, (name: string) => string> = {
  created: (n) => t('rooms.line.created', n),
  joined: (n) => t('rooms.line.joined', n),
  left: (n) => t('rooms.line.left', n),
  removed: (n) => t('rooms.line.removed', n),
  owner: (n) => t('rooms.line.owner', n),
};

function stateLabel(m: StoredMessage): string {
  if (m.state === 'sending') return t('state.sending');
  if (m.state === 'failed') return t('state.failed');
  if (!m.count || m.count[1] === 0) return t('rooms.sent');
  return t('rooms.delivered', m.count[0], m.count[1]);
}

/** Where a message goes: by its place in the room's order; ours not yet placed go last, in sending order. */
function order(m: StoredMessage): [number, number] {
  return [m.rseq ?? Number.MAX_SAFE_INTEGER, m.seq];
}

function before(a: [number, number], b: [number, number]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

/** The next message item after `li` in its list, day lines skipped. */
function nextItem(li: HTMLLIElement): Element | null {
  let n = li.nextElementSibling;
  while (n && !n.classList.contains('msg')) n = n.nextElementSibling;
  return n;
}

export function roomView(chat: Chat, onBack: () => void): HTMLElement {
  const root = el('section', { class: 'conversation room-conversation', attrs: { 'aria-label': t('conv.label'), hidden: true } });
  let items = new Map<string, { at: [number, number]; li: HTMLLIElement }>();
  let list: HTMLOListElement | undefined;
  let presenceLine: HTMLElement | undefined;
  let filesNote: HTMLElement | undefined;
  let shownGone: string | undefined;
  let refreshMembers: (() => void) | undefined;
  let composerParts: ComposerParts | undefined;

  const tellFilesOneToOne = () => {
    if (!filesNote) return;
    filesNote.textContent = t('rooms.filesOneToOne');
    filesNote.hidden = false;
  };
  // Files dropped or pasted on a room are not sent: the room says why.
  acceptFileDrops(root, () => chat.active !== undefined && isRoomPeer(chat.active), tellFilesOneToOne);

  const nearBottom = () => !list || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const toBottom = () => {
    if (list) list.scrollTop = list.scrollHeight;
  };

  const whoLine = (m: StoredMessage, li: HTMLLIElement): HTMLElement => {
    const out = el('p', { class: 'who', attrs: { role: 'status', 'aria-label': t('rooms.whoLabel') } });
    const button = el('button', {
      class: 'link', text: t('rooms.who'), attrs: { type: 'button' },
      on: {
        click: () => void chat.rooms.who(m).then((r) => {
          if ('error' in r) {
            out.textContent = r.error;
            return;
          }
          const nobody = '—';
          out.textContent = `${t('rooms.whoHas', r.delivered.join(', ') || nobody)} · ${t('rooms.whoPending', r.pending.join(', ') || nobody)}`;
        }),
      },
    });
    const wrap = el('div', { class: 'who-wrap' }, [button, out]);
    wrap.hidden = m.state === 'sending' || m.state === 'failed' || li.dataset.gone === 'true';
    return wrap;
  };

  const failureLine = (m: StoredMessage): HTMLElement | null => m.state === 'failed'
    ? el('p', { class: 'fail' }, [
      m.error ?? t('conv.refused'), ' ',
      el('button', { class: 'link', text: t('conv.tryAgain'), attrs: { type: 'button' }, on: { click: () => void chat.rooms.retry(m) } }),
    ])
    : null;

  const item = (m: StoredMessage): HTMLLIElement => {
    const attrs = { role: 'article', 'data-id': m.id, 'data-ts': String(m.ts), ...(m.rseq !== undefined ? { 'data-rseq': String(m.rseq) } : {}) };
    if (m.line) {
      return el('li', { class: 'msg line', attrs: { ...attrs, 'data-line': m.line } }, [el('span', { text: LINE[m.line](m.from) })]);
    }
    const meta = el('span', { class: 'meta' }, [
      el('time', { text: formatTime(m.ts), attrs: { datetime: new Date(m.ts).toISOString() } }),
      m.dir === 'out' ? el('span', { class: 'state', text: stateLabel(m) }) : null,
    ]);
    const li = el('li', { class: `msg ${m.dir}`, attrs: { ...attrs, 'data-state': m.state } }, [
      el('div', { class: 'bubble' }, [
        m.dir === 'in' ? el('span', { class: 'sender', text: m.from }) : null,
        el('p', { class: 'text' }, linkify(m.text)),
        meta,
      ]),
    ]);
    if (m.dir === 'out') li.append(whoLine(m, li));
    const failure = failureLine(m);
    if (failure) li.append(failure);
    return li;
  };

  /** A message's state or count changed: only its state text, who line and failure line change. */
  const update = (li: HTMLLIElement, m: StoredMessage) => {
    if (m.line || m.dir !== 'out') return;
    li.dataset.state = m.state;
    const state = li.querySelector('.state');
    if (state) state.textContent = stateLabel(m);
    const who = li.querySelector<HTMLElement>('.who-wrap');
    if (who) who.hidden = m.state === 'sending' || m.state === 'failed';
    li.querySelector('.fail')?.remove();
    const failure = failureLine(m);
    if (failure) li.append(failure);
  };

  /** `loaded`: read with the room's history when it opened; an event since then already showed something newer. */
  const upsert = (m: StoredMessage, loaded = false) => {
    if (!list || m.peer !== chat.active) return;
    const key = messageKey(m);
    if (loaded && items.has(key)) return;
    const at = order(m);
    const stick = nearBottom() || (m.dir === 'out' && !items.has(key));
    const old = items.get(key);
    if (old && old.at[0] === at[0]) {
      update(old.li, m);
      if (stick) toBottom();
      return;
    }
    // New, or its place in the order became known: (re)placed.
    const li = old?.li ?? item(m);
    if (old) update(li, m);
    items.delete(key);
    let next: HTMLLIElement | null = null;
    for (const other of [...items.values()].reverse()) {
      if (before(other.at, at)) break;
      next = other.li;
    }
    items.set(key, { at, li });
    if (old && nextItem(li) === next) {
      // Its place became known and it is where it was: not moved, so it is not announced again as new.
      items = new Map([...items.entries()].sort((a, b) => (before(a[1].at, b[1].at) ? -1 : before(b[1].at, a[1].at) ? 1 : 0)));
      if (stick) toBottom();
      return;
    }
    list.insertBefore(li, next);
    if (next || old) {
      items = new Map([...items.entries()].sort((a, b) => (before(a[1].at, b[1].at) ? -1 : before(b[1].at, a[1].at) ? 1 : 0)));
      placeDaySeparators(list);
    } else {
      dayLineIfNew(list, li, [...items.values()].at(-2)?.li, m.ts);
    }
    if (stick) toBottom();
  };

  const updatePresence = () => {
    const key = chat.active;
    if (!key || !presenceLine) return;
    const info = chat.rooms.info(key);
    if (!info) {
      presenceLine.textContent = '';
      return;
    }
    const members = [...info.members.values()];
    presenceLine.textContent = t('rooms.membersOnline', members.length, members.filter((m) => m.online).length)
      + (info.private ? ` · ${t('rooms.privateBadge')}` : '');
  };

  const updateComposer = () => {
    if (composerParts) refreshComposer(composerParts, chat);
  };

  const composer = (key: string, name: string): HTMLElement => {
    const input = el('textarea', { attrs: { rows: '1', placeholder: t('conv.placeholder', name), 'aria-label': t('conv.placeholder', name), enterkeyhint: 'send' } });
    const send = el('button', { class: 'send-button', attrs: { type: 'submit', 'aria-label': t('conv.send'), title: t('conv.send') } }, [icon('send')]);
    const counter = el('span', { class: 'counter', attrs: { 'aria-live': 'polite' } });
    const fileButton = el('button', {
      class: 'icon-button file-button', attrs: { type: 'button', 'aria-label': t('rooms.filesOneToOne'), title: t('rooms.filesOneToOne') },
      on: { click: tellFilesOneToOne },
    }, [icon('clip')]);
    composerParts = { input, send, counter };
    const form = el('form', { class: 'composer' }, [fileButton, input, send, counter]);
    const submit = () => {
      const text = input.value;
      if (text.trim() === '' || send.disabled) return;
      input.value = '';
      updateComposer();
      void chat.rooms.send(key, text);
      input.focus();
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit();
    });
    input.addEventListener('keydown', (ev) => {
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
    const r = key && isRoomPeer(key) ? chat.rooms.records.get(key) : undefined;
    if (!key || !r) {
      list = undefined;
      refreshMembers = undefined;
      root.hidden = true;
      replaceChildren(root);
      return;
    }
    root.hidden = false;
    shownGone = r.gone;
    list = el('ol', { class: 'messages', attrs: { role: 'log', tabindex: '0', 'aria-label': t('rooms.messagesIn', r.name), 'aria-live': 'polite', 'aria-relevant': 'additions' } });
    presenceLine = el('span', { class: 'presence-line' });
    const members = roomMembersView(chat, key);
    const panel = members.el;
    refreshMembers = members.refresh;
    panel.hidden = true;
    const membersButton = el('button', {
      class: 'secondary small', text: t('rooms.showMembers'),
      attrs: { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'room-members', hidden: r.gone !== undefined },
      on: {
        click: () => {
          panel.hidden = !panel.hidden;
          membersButton.setAttribute('aria-expanded', String(!panel.hidden));
        },
      },
    });
    const leave = el('button', {
      class: 'secondary small', text: t('rooms.leave'), attrs: { type: 'button', hidden: r.gone !== undefined },
      on: {
        click: () => {
          if (!confirm(t('rooms.leaveConfirm', r.name))) return;
          void chat.rooms.leave(key).then((err) => err && chat.say(err));
        },
      },
    });
    const head = el('header', { class: 'conv-head' }, [
      el('button', { class: 'icon-button back', attrs: { type: 'button', 'aria-label': t('conv.back') }, on: { click: onBack } }, [icon('back')]),
      avatar(r.name),
      el('div', { class: 'conv-title' }, [el('h2', { text: r.name }), presenceLine]),
      membersButton,
      leave,
    ]);
    filesNote = el('p', { class: 'files-note', attrs: { role: 'status', hidden: true } });
    const foot = r.gone
      ? el('p', { class: 'room-gone', attrs: { role: 'status' }, text: r.gone === 'removed' ? t('rooms.goneRemoved') : t('rooms.goneLeft') })
      : composer(key, r.name);
    replaceChildren(root, head, el('div', { class: 'room-body' }, [list, panel]), filesNote, foot);
    updatePresence();
    updateComposer();
    const target = list;
    void chat.history.conversation(key).then((messages) => {
      if (list !== target) return;
      for (const m of messages) upsert(m, true);
      toBottom();
    });
  };

  chat.on('active', render);
  chat.rooms.on('message', ({ m }) => upsert(m));
  chat.rooms.on('members', ({ key }) => {
    if (key !== chat.active) return;
    updatePresence();
    refreshMembers?.();
  });
  chat.rooms.on('rooms', () => {
    // Left or removed while open: the composer gives way to a line saying so.
    const key = chat.active;
    if (key && isRoomPeer(key) && chat.rooms.records.get(key)?.gone !== shownGone) render();
  });
  chat.on('conn', () => {
    updatePresence();
    updateComposer();
  });
  render();
  return root;
}
