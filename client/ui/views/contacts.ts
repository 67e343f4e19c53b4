/** The contact list: add by name, presence dots, unread counts, last message; picks the open conversation. */
import type { Chat } from '../chat.ts';
import { el, icon, replaceChildren } from '../dom.ts';
import type { Contact } from '../history.ts';
import { t } from '../i18n/index.ts';
import { avatar } from './avatar.ts';

export function contactsView(chat: Chat): HTMLElement {
  const input = el('input', {
    attrs: {
      name: 'contact', placeholder: t('contacts.placeholder'), autocomplete: 'off', autocapitalize: 'none',
      spellcheck: 'false', 'aria-label': t('contacts.nameLabel'), maxlength: '128',
    },
  });
  const addButton = el('button', { class: 'icon-button', attrs: { type: 'submit', title: t('contacts.add'), 'aria-label': t('contacts.add') } }, [icon('plus')]);
  const error = el('p', { class: 'form-error small', attrs: { role: 'alert' } });
  const form = el('form', { class: 'add-contact' }, [input, addButton]);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    void chat.addContact(input.value).then((r) => {
      if ('error' in r) {
        error.textContent = r.error;
        return;
      }
      error.textContent = '';
      input.value = '';
      chat.open(r.key);
    });
  });
  input.addEventListener('input', () => (error.textContent = ''));

  const list = el('ul', { class: 'contact-list', attrs: { 'aria-label': t('shell.contacts') } });
  const empty = el('div', { class: 'empty-contacts' }, [
    el('p', { text: t('contacts.none') }),
    el('p', { class: 'muted', text: t('contacts.noneHint') }),
  ]);

  const item = (c: Contact): HTMLElement => {
    const online = chat.presence.get(c.key) === true;
    const unread = c.unread > 0 ? el('span', { class: 'unread', text: c.unread > 99 ? '99+' : String(c.unread), attrs: { 'aria-label': t('contacts.unread', c.unread) } }) : null;
    const button = el('button', {
      class: 'contact',
      attrs: { type: 'button', 'data-contact': c.key, 'aria-current': chat.active === c.key ? 'true' : undefined },
      on: { click: () => chat.open(c.key) },
    }, [
      avatar(c.name, online),
      el('span', { class: 'contact-main' }, [
        el('span', { class: 'contact-name', text: c.name }),
        el('span', { class: 'contact-last', text: c.lastText || (online ? t('contacts.online') : t('contacts.offline')) }),
      ]),
      unread,
    ]);
    return el('li', {}, [button]);
  };

  const render = () => {
    const contacts = chat.sortedContacts();
    replaceChildren(list, ...contacts.map(item));
    empty.hidden = contacts.length > 0;
  };
  chat.on('contacts', render);
  chat.on('presence', render);
  chat.on('active', render);
  render();

  return el('div', { class: 'contacts' }, [
    el('div', { class: 'contacts-head' }, [form, error]),
    list,
    empty,
  ]);
}
