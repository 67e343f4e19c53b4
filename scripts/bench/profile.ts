/**
 * `npm run bench -- --profile`: Parley servers run with `--cpu-prof`, writing a V8 CPU profile when they exit
 * (the bench stops them with SIGTERM so they can). This turns those profiles into a short table of the
 * functions with the most self time, summed over every profile in a directory, as shares of busy time (idle
 * samples left out), so a change on the hot path can be shown before and after.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Samples V8 attributes to no JS function; idle is left out of the busy total. */
const IDLE = '(idle)';

function label(frame: ProfileNode['callFrame']): string {
  const name = frame.functionName || '(anonymous)';
  if (name.startsWith('(')) return name;
  const file = frame.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/');
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

/** Self time (µs) per function label, summed over the `.cpuprofile` files in `dir`. */
export function selfTimes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const labels = new Map(profile.nodes.map((n) => [n.id, label(n.callFrame)]));
    for (const [i, id] of profile.samples.entries()) {
      const key = labels.get(id) ?? '(unknown)';
      out.set(key, (out.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
    }
  }
  return out;
}

/** Rows `[function, % of busy time, busy ms]` for the `top` functions with the most self time. */
export function topSelfTime(dir: string, top = 15): Array<[string, string, string]> {
  const times = selfTimes(dir);
  times.delete(IDLE);
  const busy = [...times.values()].reduce((a, b) => a + b, 0);
  return [...times]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => [name, `${((100 * us) / busy).toFixed(1)}%`, (us / 1000).toFixed(0)]);
}
