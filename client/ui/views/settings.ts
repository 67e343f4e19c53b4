/**
 * The settings panel: a modal dialog from the top bar's gear button. Privacy switches (read receipts, typing
 * indicators) and notification switches (notifications, sound) apply at once and are remembered in this
 * browser (settings.ts).
 */
import type { Chat } from '../chat.ts';
import { el, icon } from '../dom.ts';
import { t } from '../i18n/index.ts';
import type { Settings } from '../settings.ts';
import { changePassword, deleteAccount, ParleyHttpError } from '../../sdk/index.ts';
import { authErrorText } from '../words.ts';
import { askPermission, permission } from '../notify.ts';

/** Notifications and sound; turning notifications on asks the browser's permission if it was never asked. */
function notifySection(chat: Chat): HTMLElement {
  const status = el('p', { class: 'field-hint', attrs: { role: 'status' } });
  const explain = () => {
    const p = permission();
    status.textContent = !chat.settings.notify ? '' : p === 'denied' ? t('settings.notifyDenied') : p === 'unsupported' ? t('settings.notifyUnsupported') : '';
  };
  const group = el('section', { class: 'settings-group' }, [
    el('h3', { text: t('settings.notifications') }),
    toggle(chat, 'notify', t('settings.notify'), t('settings.notifyHint'), (on) => {
      if (on) void askPermission().then(explain);
      else explain();
    }),
    status,
    toggle(chat, 'sound', t('settings.sound'), t('settings.soundHint')),
  ]);
  explain();
  return group;
}

function toggle(chat: Chat, key: keyof Settings, label: string, hint: string, onChange?: (on: boolean) => void): HTMLElement {
  const id = `setting-${key}`;
  const box = el('input', { attrs: { type: 'checkbox', id, name: key, 'aria-describedby': `${id}-hint`, checked: chat.settings[key] } });
  box.addEventListener('change', () => {
    chat.changeSettings({ [key]: box.checked });
    onChange?.(box.checked);
  });
  return el('div', { class: 'setting' }, [
    box,
    el('label', { attrs: { for: id }, text: label }),
    el('p', { class: 'field-hint', text: hint, attrs: { id: `${id}-hint` } }),
  ]);
}

export interface AccountActions {
  /** The account was deleted: leave the messenger. */
  deleted(): void;
  /** Called before asking the server to delete the account (the socket will close as SESSION_ENDED). */
  deleting(on: boolean): void;
}

function failure(err: unknown): string {
  if (err instanceof ParleyHttpError && err.code === 'BAD_CREDENTIALS') return t('settings.wrongPassword');
  return err instanceof ParleyHttpError ? authErrorText(err.code, err.message) : t('auth.somethingWrong');
}

function passwordField(id: string, label: string, autocomplete: string): [HTMLElement, HTMLInputElement] {
  const input = el('input', { attrs: { id, type: 'password', autocomplete, required: true } });
  return [el('label', { attrs: { for: id }, text: label }), input];
}

/** Change password and delete account, each asking for the current password. */
function accountSection(chat: Chat, actions: AccountActions): HTMLElement {
  const [curLabel, cur] = passwordField('settings-current', t('settings.currentPassword'), 'current-password');
  const [nextLabel, next] = passwordField('settings-new', t('settings.newPassword'), 'new-password');
  const status = el('p', { class: 'form-error small', attrs: { role: 'status' } });
  const change = el('button', { class: 'secondary small', text: t('settings.changePassword'), attrs: { type: 'submit' } });
  const form = el('form', { class: 'settings-form', attrs: { novalidate: true } }, [curLabel, cur, nextLabel, next, change, status]);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if ([...next.value].length < 8) {
      status.textContent = t('auth.err.badPassword');
      return;
    }
    change.disabled = true;
    changePassword({ baseUrl: '' }, cur.value, next.value).then(
      () => {
        status.textContent = t('settings.passwordChanged');
        status.className = 'form-ok small';
        cur.value = '';
        next.value = '';
      },
      (err: unknown) => {
        status.className = 'form-error small';
        status.textContent = failure(err);
      },
    ).finally(() => (change.disabled = false));
  });

  const [delLabel, delPass] = passwordField('settings-delete-password', t('settings.currentPassword'), 'current-password');
  const delStatus = el('p', { class: 'form-error small', attrs: { role: 'alert' } });
  const del = el('button', { class: 'danger small', text: t('settings.deleteAccount'), attrs: { type: 'submit' } });
  const delForm = el('form', { class: 'settings-form', attrs: { novalidate: true } }, [
    el('p', { class: 'field-hint', text: t('settings.deleteHint') }), delLabel, delPass, del, delStatus,
  ]);
  delForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!confirm(t('settings.deleteConfirm', chat.me))) return;
    del.disabled = true;
    actions.deleting(true);
    deleteAccount({ baseUrl: '' }, delPass.value).then(
      () => {
        delForm.closest('dialog')?.close();
        actions.deleted();
      },
      (err: unknown) => {
        actions.deleting(false);
        del.disabled = false;
        delStatus.textContent = failure(err);
      },
    );
  });
  return el('section', { class: 'settings-group' }, [el('h3', { text: t('settings.account') }), form, delForm]);
}

export function settingsPanel(chat: Chat, actions: AccountActions): HTMLDialogElement {
  const dialog = el('dialog', { class: 'settings', attrs: { 'aria-labelledby': 'settings-title' } });
  const close = el('button', { class: 'secondary small', text: t('settings.close'), attrs: { type: 'button' }, on: { click: () => dialog.close() } });
  dialog.append(
    el('h2', { text: t('settings.title'), attrs: { id: 'settings-title' } }),
    el('section', { class: 'settings-group' }, [
      el('h3', { text: t('settings.privacy') }),
      toggle(chat, 'readReceipts', t('settings.readReceipts'), t('settings.readReceiptsHint')),
      toggle(chat, 'typing', t('settings.typing'), t('settings.typingHint')),
    ]),
    notifySection(chat),
    accountSection(chat, actions),
    el('div', { class: 'settings-actions' }, [close]),
  );
  dialog.addEventListener('close', () => dialog.remove());
  return dialog;
}

export function settingsButton(chat: Chat, actions: AccountActions): HTMLElement {
  return el('button', {
    class: 'icon-button settings-button', attrs: { type: 'button', 'aria-label': t('settings.open'), title: t('settings.open'), 'aria-haspopup': 'dialog' },
    on: {
      click: () => {
        const d = settingsPanel(chat, actions);
        document.body.append(d);
        d.showModal();
      },
    },
  }, [icon('settings')]);
}
