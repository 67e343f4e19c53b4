/** The sign-in / create-account screen. Calls `onSignedIn(name)` once the server has set the session cookie. */
import { ParleyHttpError, register, signIn } from '../../sdk/index.ts';
import { el } from '../dom.ts';
import { authErrorText } from '../words.ts';

export interface SignInOptions {
  /** Prefilled name (e.g. after a takeover). */
  name?: string;
  /** A line above the form saying why the person is here. */
  notice?: string;
  onSignedIn(name: string): void;
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
  const hint = el('p', { class: 'field-hint', text: 'At least 8 characters.', attrs: { id: 'auth-password-hint', hidden: true } });
  const error = el('p', { class: 'form-error', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const submit = el('button', { class: 'primary wide', text: 'Sign in', attrs: { type: 'submit' } });

  const tabIn = el('button', { class: 'tab', text: 'Sign in', attrs: { type: 'button', role: 'tab', 'aria-selected': 'true' } });
  const tabUp = el('button', { class: 'tab', text: 'Create account', attrs: { type: 'button', role: 'tab', 'aria-selected': 'false' } });

  const setMode = (m: 'signin' | 'signup') => {
    mode = m;
    tabIn.setAttribute('aria-selected', String(m === 'signin'));
    tabUp.setAttribute('aria-selected', String(m === 'signup'));
    submit.textContent = m === 'signin' ? 'Sign in' : 'Create account';
    passInput.setAttribute('autocomplete', m === 'signin' ? 'current-password' : 'new-password');
    hint.hidden = m === 'signin';
    error.textContent = '';
  };
  tabIn.addEventListener('click', () => setMode('signin'));
  tabUp.addEventListener('click', () => setMode('signup'));

  const form = el('form', { class: 'auth-form', attrs: { novalidate: true } }, [
    el('label', { attrs: { for: 'auth-name' }, text: 'Name' }),
    nameInput,
    el('label', { attrs: { for: 'auth-password' }, text: 'Password' }),
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
      error.textContent = 'Enter your name.';
      nameInput.focus();
      return;
    }
    if (!password) {
      error.textContent = 'Enter your password.';
      passInput.focus();
      return;
    }
    if (mode === 'signup' && [...password].length < 8) {
      error.textContent = 'Passwords need at least 8 characters.';
      passInput.focus();
      return;
    }
    error.textContent = '';
    submit.disabled = true;
    submit.textContent = mode === 'signin' ? 'Signing in…' : 'Creating your account…';
    const work = async () => {
      if (mode === 'signup') await register(HTTP, name, password);
      return signIn(HTTP, name, password);
    };
    work().then(
      (s) => opts.onSignedIn(s.name),
      (err: unknown) => {
        submit.disabled = false;
        submit.textContent = mode === 'signin' ? 'Sign in' : 'Create account';
        error.textContent = err instanceof ParleyHttpError ? authErrorText(err.code, err.message) : 'Something went wrong. Try again.';
        passInput.select();
      },
    );
  });

  return el('main', { class: 'auth' }, [
    el('div', { class: 'auth-card' }, [
      el('h1', { class: 'brand-large' }, [el('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }), 'Parley']),
      el('p', { class: 'tagline', text: 'Talk with the people you know, and send them videos they can watch while they arrive.' }),
      opts.notice ? el('p', { class: 'auth-notice', text: opts.notice, attrs: { role: 'status' } }) : null,
      el('div', { class: 'tabs', attrs: { role: 'tablist' } }, [tabIn, tabUp]),
      form,
    ]),
  ]);
}
