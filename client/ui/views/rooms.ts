/**
 * The room list beside the contacts: join or create a room by name (public, or private by invitation), browse
 * the public rooms, the invitations waiting, and your rooms with unread counts and their last message.
 */
import type { Chat } from '../chat.ts';
import { el, replaceChildren } from '../dom.ts';
import type { Contact } from '../history.ts';
import { t } from '../i18n/index.ts';
import { avatar } from './avatar.ts';

export function roomsView(chat: Chat): HTMLElement {
  const rooms = chat.rooms;
  const input = el('input', {
    attrs: {
      name: 'room', placeholder: t('rooms.placeholder'), autocomplete: 'off', autocapitalize: 'none',
      spellcheck: 'false', 'aria-label': t('rooms.nameLabel'), maxlength: '128',
    },
  });
  const priv = el('input', { attrs: { type: 'checkbox', id: 'room-private' } });
  const join = el('button', { class: 'primary small', text: t('rooms.join'), attrs: { type: 'submit' } });
  const create = el('button', { class: 'secondary small', text: t('rooms.create'), attrs: { type: 'button' } });
  const error = el('p', { class: 'form-error small', attrs: { role: 'alert' } });
  const form = el('form', { class: 'room-form' }, [
    el('div', { class: 'room-form-row' }, [input, join, create]),
    el('div', { class: 'room-private' }, [priv, el('label', { text: t('rooms.private'), attrs: { for: 'room-private' } })]),
  ]);

  const done = (r: { key: string } | { error: string }) => {
    if ('error' in r) {
      error.textContent = r.error;
      return;
    }
    error.textContent = '';
    input.value = '';
    priv.checked = false;
    chat.open(r.key);
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (input.value.trim()) void rooms.join(input.value).then(done);
  });
  create.addEventListener('click', () => {
    if (input.value.trim()) void rooms.create(input.value, priv.checked).then(done);
  });
  input.addEventListener('input', () => (error.textContent = ''));

  // Public rooms, fetched each time the list is opened.
  const publicList = el('ul', { class: 'public-rooms', attrs: { 'aria-label': t('rooms.publicTitle'), hidden: true } });
  const browse = el('button', { class: 'link', text: t('rooms.browse'), attrs: { type: 'button', 'aria-expanded': 'false' } });
  browse.addEventListener('click', () => {
    const open = publicList.hidden;
    publicList.hidden = !open;
    browse.setAttribute('aria-expanded', String(open));
    browse.textContent = open ? t('rooms.hideBrowse') : t('rooms.browse');
    if (!open) return;
    replaceChildren(publicList);
    void rooms.list().then((list) => {
      if ('error' in list) {
        replaceChildren(publicList, el('li', { class: 'muted', text: list.error }));
        return;
      }
      if (list.length === 0) {
        replaceChildren(publicList, el('li', { class: 'muted', text: t('rooms.publicNone') }));
        return;
      }
      replaceChildren(publicList, ...list.map((r) => el('li', { class: 'public-room' }, [
        el('span', { class: 'contact-main' }, [
          el('span', { class: 'contact-name', text: r.room }),
          el('span', { class: 'contact-last', text: t('rooms.ownedBy', r.owner) }),
        ]),
        el('button', {
          class: 'secondary small', text: t('rooms.join'), attrs: { type: 'button', 'aria-label': t('rooms.joinRoom', r.room) },
          on: { click: () => void rooms.join(r.room).then(done) },
        }),
      ])));
    });
  });

  const invitations = el('ul', { class: 'invitations', attrs: { 'aria-label': t('rooms.title') } });
  const list = el('ul', { class: 'contact-list room-list', attrs: { 'aria-label': t('rooms.listLabel') } });
  const empty = el('p', { class: 'muted empty-rooms', text: t('rooms.none') });

  const item = (r: Contact): HTMLElement => {
    const unread = r.unread > 0 ? el('span', { class: 'unread', text: r.unread > 99 ? '99+' : String(r.unread), attrs: { 'aria-label': t('contacts.unread', r.unread) } }) : null;
    const last = r.gone === 'removed' ? t('rooms.goneRemoved') : r.gone === 'left' ? t('rooms.goneLeft') : r.lastText;
    return el('li', {}, [el('button', {
      class: 'contact room', attrs: { type: 'button', 'data-room': r.key, 'aria-current': chat.active === r.key ? 'true' : undefined },
      on: { click: () => chat.open(r.key) },
    }, [
      avatar(r.name),
      el('span', { class: 'contact-main' }, [
        el('span', { class: 'contact-name', text: r.name }),
        el('span', { class: 'contact-last', text: last }),
      ]),
      unread,
    ])]);
  };

  const render = () => {
    const sorted = rooms.sorted();
    replaceChildren(list, ...sorted.map(item));
    // An invitation to a room this account is in already is nothing to show.
    const waiting = [...rooms.invitations].filter(([key]) => rooms.records.get(key)?.gone !== undefined || !rooms.records.has(key)).map(([, i]) => i);
    replaceChildren(invitations, ...waiting.map((i) => el('li', { class: 'invitation' }, [
      el('span', { class: 'contact-main' }, [
        el('span', { class: 'contact-name', text: i.room }),
        el('span', { class: 'contact-last', text: t('rooms.invitedBy', i.by) }),
      ]),
      el('button', {
        class: 'primary small', text: t('rooms.join'), attrs: { type: 'button', 'aria-label': t('rooms.joinRoom', i.room) },
        on: { click: () => void rooms.join(i.room).then(done) },
      }),
    ])));
    invitations.hidden = invitations.childElementCount === 0;
    empty.hidden = sorted.length > 0;
  };
  rooms.on('rooms', render);
  chat.on('active', render);
  render();

  const heading = el('h2', { class: 'rooms-title', text: t('rooms.title'), attrs: { id: 'rooms-title' } });
  return el('section', { class: 'rooms', attrs: { 'aria-labelledby': 'rooms-title' } }, [
    el('div', { class: 'contacts-head' }, [heading, form, error, browse, publicList]),
    invitations,
    list,
    empty,
  ]);
}
