/** The sign-in / create-account screen. Calls `onSignedIn(name)` once the server has set the session cookie. */
import { ParleyHttpError, register, signIn } from '../../sdk/index.ts';
import { el } from '../dom.ts';
import { t } from '../i18n/index.ts';
import { authErrorText } from '../words.ts';
import { languageSwitch } from './language.ts';

export interface SignInOptions {
  /** Prefilled name (e.g. after a takeover). */
  name?: string;
  /** A line above the form saying why the person is here. */
  notice?: string;
  onSignedIn(name: string): void;
  /** The language was switched: render this screen again. */
  onLanguage(): void;
}

const HTTP = { baseUrl: '' };

export function signInView(opts: SignInOptions): HTMLElement {
  let mode: 'signin' | 'signup' = 'signin';

  const nameInput = el('input', {
    attrs: {
      id: 'auth-name', name: 'name', autocomplete: 'username', required: true, maxlength: '128',
      autocapitalize: 'none', spellcheck: 'false', autofocus: !opts.name,
    },
  });
  nameInput.value = opts.name ?? '';
  const passInput = el('input', {
    attrs: { id: 'auth-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, autofocus: !!opts.name },
  });
  const hint = el('p', { class: 'field-hint', text: t('auth.passwordHint'), attrs: { id: 'auth-password-hint', hidden: true } });
  const error = el('p', { class: 'form-error', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const submit = el('button', { class: 'primary wide', text: t('auth.signIn'), attrs: { type: 'submit' } });

  const tabIn = el('button', { class: 'tab', text: t('auth.signIn'), attrs: { type: 'button', role: 'tab', 'aria-selected': 'true' } });
  const tabUp = el('button', { class: 'tab', text: t('auth.createAccount'), attrs: { type: 'button', role: 'tab', 'aria-selected': 'false' } });

  const setMode = (m: 'signin' | 'signup') => {
    mode = m;
    tabIn.setAttribute('aria-selected', String(m === 'signin'));
    tabUp.setAttribute('aria-selected', String(m === 'signup'));
    submit.textContent = m === 'signin' ? t('auth.signIn') : t('auth.createAccount');
    passInput.setAttribute('autocomplete', m === 'signin' ? 'current-password' : 'new-password');
    hint.hidden = m === 'signin';
    error.textContent = '';
  };
  tabIn.addEventListener('click', () => setMode('signin'));
  tabUp.addEventListener('click', () => setMode('signup'));

  const form = el('form', { class: 'auth-form', attrs: { novalidate: true } }, [
    el('label', { attrs: { for: 'auth-name' }, text: t('auth.name') }),
    nameInput,
    el('label', { attrs: { for: 'auth-password' }, text: t('auth.password') }),
    passInput,
    hint,
    error,
    submit,
  ]);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = nameInput.value.trim();
    const password = passInput.value;
    if (!name) {
      error.textContent = t('auth.enterName');
      nameInput.focus();
      return;
    }
    if (!password) {
      error.textContent = t('auth.enterPassword');
      passInput.focus();
      return;
    }
    if (mode === 'signup' && [...password].length < 8) {
      error.textContent = t('auth.err.badPassword');
      passInput.focus();
      return;
    }
    error.textContent = '';
    submit.disabled = true;
    submit.textContent = mode === 'signin' ? t('auth.signingIn') : t('auth.creating');
    const work = async () => {
      if (mode === 'signup') await register(HTTP, name, password);
      return signIn(HTTP, name, password);
    };
    work().then(
      (s) => opts.onSignedIn(s.name),
      (err: unknown) => {
        submit.disabled = false;
        submit.textContent = mode === 'signin' ? t('auth.signIn') : t('auth.createAccount');
        error.textContent = err instanceof ParleyHttpError ? authErrorText(err.code, err.message) : t('auth.somethingWrong');
        passInput.select();
      },
    );
  });

  return el('main', { class: 'auth' }, [
    el('div', { class: 'auth-lang' }, [languageSwitch(opts.onLanguage)]),
    el('div', { class: 'auth-card' }, [
      el('h1', { class: 'brand-large' }, [el('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }), 'Parley']),
      el('p', { class: 'tagline', text: t('auth.tagline') }),
      opts.notice ? el('p', { class: 'auth-notice', text: opts.notice, attrs: { role: 'status' } }) : null,
      el('div', { class: 'tabs', attrs: { role: 'tablist' } }, [tabIn, tabUp]),
      form,
    ]),
  ]);
}
