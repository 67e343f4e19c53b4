/** The example bot's answers (scripts/bot/replies.ts): commands, echo, the size limit, and answer ids. */
import { describe, expect, it } from 'vitest';
import { Limits } from '../../shared/protocol.ts';
import { answer, answerId, HELP, truncate } from '../../scripts/bot/replies.ts';

const now = new Date('2026-12-02T04:05:06.789Z');

describe('bot answers', () => {
  it('knows its commands, whatever their case and surrounding space, and echoes the rest', () => {
    expect(answer('/help', now, Limits.maxTextBytes)).toBe(HELP);
    expect(answer('  /TIME please ', now, Limits.maxTextBytes)).toBe('It is 2026-12-02T04:05:06.789Z (UTC).');
    expect(answer('/ping', now, Limits.maxTextBytes)).toBe('pong');
    expect(answer('/dance', now, Limits.maxTextBytes)).toBe('I do not know /dance. Try /help.');
    expect(answer('hello /help', now, Limits.maxTextBytes)).toBe('You said: hello /help');
  });

  it('keeps an echo within the size limit without splitting a character', () => {
    const long = '小'.repeat(Limits.maxTextBytes / 3); // exactly the limit in UTF-8: the prefix pushes it over
    const echo = answer(long, now, Limits.maxTextBytes);
    expect(Buffer.byteLength(echo)).toBeLessThanOrEqual(Limits.maxTextBytes);
    expect(echo.startsWith('You said: 小')).toBe(true);
    expect(echo.endsWith('小')).toBe(true);
    expect(truncate('aé', 2)).toBe('a');
    expect(truncate('aé', 3)).toBe('aé');
  });

  it('answers one question under one id: the same every time, different for another question or asker', () => {
    const id = answerId('alice', 'question-0001');
    expect(id).toMatch(/^[A-Za-z0-9_-]{21}$/);
    expect(answerId('Alice', 'question-0001')).toBe(id); // names are unique ignoring case
    expect(answerId('alice', 'question-0002')).not.toBe(id);
    expect(answerId('bob', 'question-0001')).not.toBe(id);
  });
});
