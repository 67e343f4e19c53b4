/**
 * The text composer's state, shared by the one-to-one and the room conversation: the byte counter past the
 * server's limit, whether sending is possible, and the textarea growing with its text up to a few lines.
 */
import type { Chat } from '../chat.ts';
import { t } from '../i18n/index.ts';
import { formatBytes } from '../words.ts';

export interface ComposerParts {
  input: HTMLTextAreaElement;
  send: HTMLButtonElement;
  counter: HTMLElement;
}

const encoder = new TextEncoder();

export function refreshComposer(parts: ComposerParts, chat: Chat): void {
  const { input, send, counter } = parts;
  const closed = chat.conn === 'closed';
  const max = chat.client.welcome?.limits.maxTextBytes ?? 16 * 1024;
  const bytes = encoder.encode(input.value).length;
  const over = bytes > max;
  counter.textContent = over ? t('conv.tooLong', formatBytes(bytes - max)) : '';
  input.disabled = closed;
  send.disabled = closed || over || input.value.trim() === '';
  // Grow with the text up to a few lines (CSSOM assignments are allowed by the CSP).
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}
