/** Numbers, sizes, durations, dates and times in the current language, all through Intl. */
import { locale } from './locale.ts';

const DAY = 86_400_000;

function unit(value: number, u: string, digits = 0): string {
  return new Intl.NumberFormat(locale(), { style: 'unit', unit: u, unitDisplay: 'short', maximumFractionDigits: digits }).format(value);
}

export function formatBytes(n: number): string {
  if (n < 1024) return unit(n, 'byte');
  const units = ['kilobyte', 'megabyte', 'gigabyte', 'terabyte'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return unit(v < 10 ? v : Math.round(v), units[i]!, v < 10 ? 1 : 0);
}

export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(Math.round(bytesPerSec))}/s`;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '';
  const s = Math.ceil(sec);
  if (s < 60) return unit(s, 'second');
  const m = Math.floor(s / 60);
  if (m < 60) return `${unit(m, 'minute')} ${unit(s % 60, 'second')}`;
  return `${unit(Math.floor(m / 60), 'hour')} ${unit(m % 60, 'minute')}`;
}

function sameDay(a: Date, b: Date): boolean {
  return a.toDateString() === b.toDateString();
}

/** "14:03" today, "Mon 14:03" this week, "3 Mar 14:03" before (each in the page's language). */
export function formatTime(ts: number, now = Date.now()): string {
  const d = new Date(ts);
  const l = locale();
  if (sameDay(d, new Date(now))) return new Intl.DateTimeFormat(l, { hour: '2-digit', minute: '2-digit' }).format(d);
  if (now - ts < 6 * DAY) return new Intl.DateTimeFormat(l, { weekday: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
  return new Intl.DateTimeFormat(l, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
}

/** A day as a separator between messages: "Today", "Yesterday", else the full date. */
export function formatDay(ts: number, now = Date.now()): string {
  const d = new Date(ts);
  const n = new Date(now);
  const l = locale();
  const yesterday = new Date(n.getFullYear(), n.getMonth(), n.getDate() - 1);
  const rel = new Intl.RelativeTimeFormat(l, { numeric: 'auto' });
  const cap = (s: string) => s.charAt(0).toLocaleUpperCase(l) + s.slice(1);
  if (sameDay(d, n)) return cap(rel.format(0, 'day'));
  if (sameDay(d, yesterday)) return cap(rel.format(-1, 'day'));
  const sameYear = d.getFullYear() === n.getFullYear();
  return new Intl.DateTimeFormat(l, sameYear ? { weekday: 'long', day: 'numeric', month: 'long' } : { dateStyle: 'long' }).format(d);
}

/** Local calendar day of a timestamp, to tell when a separator is due. */
export function dayKey(ts: number): string {
  return new Date(ts).toDateString();
}
