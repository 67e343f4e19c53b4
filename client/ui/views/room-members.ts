/**
 * A room's members with their presence; for the owner, inviting by name, removing a member and handing the
 * room over. Rendered again whenever the room's members, their presence or its owner change.
 */
import type { Chat } from '../chat.ts';
import { el, replaceChildren } from '../dom.ts';
import { t } from '../i18n/index.ts';
import { nameKey } from '../../../shared/names.ts';
import { avatar } from './avatar.ts';

/** The panel, and `refresh` for the room view to call when the room's members change. */
export function roomMembersView(chat: Chat, key: string): { el: HTMLElement; refresh: () => void } {
  const list = el('ul', { class: 'member-list', attrs: { 'aria-label': t('rooms.members') } });
  const status = el('p', { class: 'member-status', attrs: { role: 'status' } });
  const input = el('input', {
    attrs: { name: 'invite', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', 'aria-label': t('rooms.inviteLabel'), placeholder: t('rooms.inviteLabel'), maxlength: '128' },
  });
  const invite = el('form', { class: 'room-invite' }, [input, el('button', { class: 'primary small', text: t('rooms.invite'), attrs: { type: 'submit' } })]);
  invite.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    void chat.rooms.invite(key, name).then((err) => {
      status.textContent = err ?? t('rooms.invitedOk', name);
      if (!err) input.value = '';
    });
  });

  const said = (err: string | undefined) => {
    status.textContent = err ?? '';
  };

  const render = () => {
    const info = chat.rooms.info(key);
    const room = chat.rooms.records.get(key)?.name ?? '';
    const mine = info !== undefined && nameKey(info.owner) === chat.meKey;
    invite.hidden = !mine;
    if (!info) {
      replaceChildren(list);
      return;
    }
    const members = [...info.members.values()].sort((a, b) =>
      Number(nameKey(b.name) === nameKey(info.owner)) - Number(nameKey(a.name) === nameKey(info.owner)) || a.name.localeCompare(b.name));
    replaceChildren(list, ...members.map((m) => {
      const isOwner = nameKey(m.name) === nameKey(info.owner);
      const isMe = nameKey(m.name) === chat.meKey;
      const tags = [isOwner ? t('rooms.owner') : '', isMe ? t('rooms.you') : ''].filter(Boolean).join(', ');
      return el('li', { class: 'member', attrs: { 'data-member': m.name, 'data-online': String(m.online) } }, [
        avatar(m.name, m.online),
        el('span', { class: 'contact-main' }, [
          el('span', { class: 'contact-name', text: tags ? `${m.name} (${tags})` : m.name }),
          el('span', { class: 'contact-last', text: m.online ? t('contacts.online') : t('contacts.offline') }),
        ]),
        mine && !isMe ? el('button', {
          class: 'secondary small', text: t('rooms.makeOwner', m.name), attrs: { type: 'button', 'data-action': 'owner' },
          on: { click: () => { if (confirm(t('rooms.handOverConfirm', m.name, room))) void chat.rooms.handOver(key, m.name).then(said); } },
        }) : null,
        mine && !isMe ? el('button', {
          class: 'danger small', text: t('rooms.remove', m.name), attrs: { type: 'button', 'data-action': 'remove' },
          on: { click: () => { if (confirm(t('rooms.removeConfirm', m.name, room))) void chat.rooms.remove(key, m.name).then(said); } },
        }) : null,
      ]);
    }));
  };
  render();

  const panel = el('aside', { class: 'room-members', attrs: { id: 'room-members', 'aria-label': t('rooms.members') } }, [
    el('h3', { text: t('rooms.members') }),
    list,
    invite,
    status,
  ]);
  return { el: panel, refresh: render };
}
