/** Keeps README.md and docs/protocol.md true: every setting, error code, close code and abort reason appears. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../server/config.ts';
import { AbortReason, CloseCode, ErrorCode } from '../../shared/codes.ts';
import { Op } from '../../shared/protocol.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

describe('documentation', () => {
  it('README lists every setting with its default', () => {
    for (const s of Object.values(SETTINGS)) {
      expect(readme, s.env).toContain(`\`${s.env}\``);
      if (s.def) expect(readme, s.env).toContain(`| \`${s.def}\` |`);
    }
  });

  it('README gives the two commands', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });

  it('docs/protocol.md lists every opcode, error code, close code and abort reason', () => {
    for (const [name, op] of Object.entries(Op)) expect(protocol, name).toMatch(new RegExp(`\\| ${op} \\| ${name[0]!.toLowerCase()}${name.slice(1)} \\|`));
    for (const code of Object.keys(ErrorCode)) expect(protocol, code).toContain(`| \`${code}\` |`);
    for (const [name, code] of Object.entries(CloseCode)) expect(protocol, name).toContain(`| ${code} | \`${name}\` |`);
    for (const reason of Object.keys(AbortReason)) expect(protocol, reason).toContain(`\`${reason}\``);
  });
});
