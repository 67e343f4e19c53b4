/**
 * The recipient's video card: the offer (name, size, type) with Watch / Decline; once accepted, a <video>
 * fed by the media player (client/media, loaded on first use) while the bytes arrive, a progress bar, a plain
 * explanation when the browser can only play the file whole or not at all, Save at the end, and Cancel.
 *
 * Flow control: each chunk is handed to `player.push()` and the next is taken only once the player has it;
 * the SDK grants the sender credit as chunks are taken, so a full playback buffer slows the sender down.
 *
 * The card's data attributes (state, mode, received, firstPlayReceived) are what the end-to-end tests read.
 */
import { StreamError, type IncomingStream } from '../../sdk/index.ts';
import type { Player } from '../../media/player.ts';
import type { Chat } from '../chat.ts';
import { el, icon } from '../dom.ts';
import { messageKey } from '../history.ts';
import { knobs } from '../knobs.ts';
import { describeType, formatBytes, streamEndText } from '../words.ts';
import { progressView } from './progress.ts';

/** Most bytes a video may take in memory for Blob playback and for saving. */
const MEMORY_CAP_BYTES = 512 * 1024 * 1024;

function cancelled(err: StreamError): boolean {
  return err.reason === 'SENDER_CANCELLED' || err.reason === 'RECIPIENT_CANCELLED';
}

export function receiveVideo(chat: Chat, s: IncomingStream): void {
  const peer = s.from;
  const meta = s.meta;
  const record = chat.videoRecord(peer, 'in', meta.name, meta.size, `Offered by ${peer}`);

  const status = el('p', { class: 'video-status', text: `${peer} wants to send you a video.`, attrs: { role: 'status' } });
  const note = el('p', { class: 'video-note', attrs: { hidden: true } });
  const progress = progressView(`Receiving ${meta.name}`);
  progress.el.hidden = true;
  const videoSlot = el('div', { class: 'video-slot', attrs: { hidden: true } });
  const accept = el('button', { class: 'primary', text: 'Watch', attrs: { type: 'button' } });
  const decline = el('button', { class: 'secondary', text: 'Decline', attrs: { type: 'button' } });
  const cancel = el('button', { class: 'secondary', text: 'Stop', attrs: { type: 'button', hidden: true } });
  const save = el('button', { class: 'secondary', attrs: { type: 'button', hidden: true } }, [icon('download'), 'Save']);
  const card = el('div', { class: 'video-card incoming', attrs: { 'data-video': 'in', 'data-state': 'offered', 'data-size': String(meta.size), 'data-received': '0' } }, [
    el('div', { class: 'video-title' }, [icon('video'), el('span', { class: 'file-name', text: meta.name })]),
    el('p', { class: 'muted', text: `${formatBytes(meta.size)} · ${describeType(meta.container, meta.mime)}` }),
    videoSlot,
    status,
    progress.el,
    note,
    el('div', { class: 'video-actions' }, [accept, decline, cancel, save]),
  ]);
  chat.liveCards.set(messageKey(record), card);
  void chat.storeVideo(record);

  let player: Player | undefined;
  let settled = false;
  const say = (text: string) => {
    note.textContent = text;
    note.hidden = false;
  };
  const finish = (state: string, text: string) => {
    if (settled) return;
    settled = true;
    card.dataset.state = state;
    status.textContent = text;
    accept.hidden = true;
    decline.hidden = true;
    cancel.hidden = true;
    if (state !== 'done') progress.finish();
    void chat.updateVideoNote(record, text);
  };

  // Cancelled by either side, or cut by a disconnect or takeover: say so at once (chunks still queued in
  // the stream are dropped by the receive loop, which stops when the card is settled).
  s.on('aborted', (err) => {
    player?.abort(err.message);
    finish(cancelled(err) ? 'cancelled' : 'failed', streamEndText(chat.streamReason(err), peer, 'recipient', err.message));
  });
  s.on('progress', ({ bytes, size }) => {
    card.dataset.received = String(bytes);
    progress.update(bytes, size);
  });

  decline.addEventListener('click', () => {
    s.decline();
    finish('declined', 'You declined the video.');
  });
  cancel.addEventListener('click', () => s.cancel('cancelled by recipient'));
  save.addEventListener('click', () => {
    if (!player?.save(meta.name)) say('The file was not kept, so it cannot be saved.');
  });

  accept.addEventListener('click', () => {
    accept.disabled = true;
    decline.disabled = true;
    void watch().catch((err: unknown) => {
      player?.abort('failed');
      finish('failed', `The video could not be received: ${err instanceof Error ? err.message : String(err)}`);
    });
  });

  const watch = async () => {
    const { createPlayer } = await import('../../media/player.ts');
    if (settled) return;
    const video = el('video', { attrs: { controls: true, playsinline: true, preload: 'auto' } });
    videoSlot.append(video);
    videoSlot.hidden = false;
    const p = createPlayer({ video, mime: meta.mime, container: meta.container, size: meta.size, memoryCapBytes: MEMORY_CAP_BYTES });
    player = p;
    const showMode = (mode: string, reason?: string) => {
      card.dataset.mode = mode;
      if (reason) say(reason);
      if (mode === 'download') videoSlot.hidden = true;
    };
    p.on('mode', ({ mode, reason }) => showMode(mode, reason));
    p.on('fallback', ({ mode, reason }) => showMode(mode, reason));
    p.on('playing', () => {
      card.dataset.firstPlayReceived ??= String(s.received);
    });
    p.on('blocked', () => say('Press play to start the video.'));
    p.on('complete', ({ saveable, reason }) => {
      save.hidden = !saveable;
      if (!saveable && reason) say(reason);
    });
    p.on('error', ({ message }) => say(`Playback problem: ${message}`));

    accept.hidden = true;
    decline.hidden = true;
    cancel.hidden = false;
    progress.el.hidden = false;
    progress.update(0, meta.size);
    card.dataset.state = 'receiving';
    status.textContent = `Receiving from ${peer}…`;
    s.accept(knobs.recvWindow);
    try {
      const started = performance.now();
      let taken = 0;
      for await (const chunk of s) {
        if (settled) return; // stopped here: the bytes still queued are not wanted
        if (knobs.recvRate) {
          taken += chunk.byteLength;
          const due = started + (taken / knobs.recvRate) * 1000;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        await p.push(chunk);
      }
      if (settled) return;
      await p.end();
      progress.update(meta.size, meta.size);
      finish('done', p.mode === 'download' ? 'The whole file has arrived. Save it to open it in another player.' : 'The whole video has arrived.');
    } catch (err) {
      if (!(err instanceof StreamError)) throw err; // StreamErrors were reported by the 'aborted' listener
    }
  };
}
