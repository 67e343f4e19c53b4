/**
 * What the example bot (scripts/bot.ts) answers: a pure function of the text it got and the time, so the answers
 * can be tested without a server. Commands start with `/`; anything else is echoed back.
 */
import { createHash } from 'node:crypto';

export const HELP = [
  'I am an example Parley bot. Commands:',
  '/help  this list',
  '/time  the time here (UTC)',
  '/ping  pong',
  'Anything else I send back to you.',
].join('\n');

const ECHO_PREFIX = 'You said: ';

/** The answer to `text`, at most `maxBytes` of UTF-8 (the server's limit, from `welcome`). */
export function answer(text: string, now: Date, maxBytes: number): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('/')) {
    const command = trimmed.split(/\s+/, 1)[0]!.toLowerCase();
    switch (command) {
      case '/help': return HELP;
      case '/time': return `It is ${now.toISOString()} (UTC).`;
      case '/ping': return 'pong';
      default: return truncate(`I do not know ${command}. Try /help.`, maxBytes);
    }
  }
  return truncate(ECHO_PREFIX + text, maxBytes);
}

/** Cuts `s` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncate(s: string, maxBytes: number): string {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // back off to the start of a character
  return bytes.subarray(0, end).toString('utf8');
}

/**
 * The id of the answer to message `id` from `from`: the same every time, so an answer sent again (the bot
 * restarted before acknowledging the question, which then came again) is de-duplicated by the server and the
 * asker by (sender, id) instead of arriving twice. 21 URL-safe characters, like the SDK's own ids.
 */
export function answerId(from: string, id: string): string {
  return createHash('sha256').update(`${from.normalize('NFKC').toLowerCase()}\n${id}`).digest('base64url').slice(0, 21);
}
