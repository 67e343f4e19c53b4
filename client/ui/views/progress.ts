/** A progress bar with "3.1 MB of 12 MB · 1.2 MB/s · 8 s left", shared by the sending and receiving cards. */
import { el } from '../dom.ts';
import { t as tr } from '../i18n/index.ts';
import { formatBytes, formatDuration, formatRate } from '../words.ts';

/** Rate over the last few seconds, so a burst at the start does not promise a finish that will not come. */
const WINDOW_MS = 3000;

export interface ProgressView {
  el: HTMLElement;
  update(bytes: number, size: number): void;
  /** Freezes the line: `text`, or how far it got (no rate or time left). The bar stays where it was. */
  finish(text?: string): void;
}

export function progressView(label: string): ProgressView {
  const bar = el('progress', { attrs: { max: '1', value: '0', 'aria-label': label } });
  const line = el('span', { class: 'progress-line' });
  const samples: { t: number; bytes: number }[] = [];
  let last = 0;
  let shown = { bytes: 0, size: 0 };
  let frozen = false;
  return {
    el: el('div', { class: 'progress' }, [bar, line]),
    update(bytes, size) {
      if (frozen) return;
      shown = { bytes, size };
      const t = performance.now();
      samples.push({ t, bytes });
      while (samples.length > 2 && t - samples[0]!.t > WINDOW_MS) samples.shift();
      bar.max = Math.max(1, size);
      bar.value = bytes;
      // Repainting the text at most a few times a second keeps it readable.
      if (t - last < 250 && bytes < size) return;
      last = t;
      const first = samples[0]!;
      const rate = t > first.t ? ((bytes - first.bytes) * 1000) / (t - first.t) : 0;
      const parts = [tr('progress.of', formatBytes(bytes), formatBytes(size))];
      if (rate > 0 && bytes < size) {
        parts.push(formatRate(rate));
        parts.push(tr('progress.left', formatDuration((size - bytes) / rate)));
      }
      line.textContent = parts.join(' · ');
    },
    finish(text) {
      frozen = true;
      line.textContent = text ?? tr('progress.of', formatBytes(shown.bytes), formatBytes(shown.size));
    },
  };
}
