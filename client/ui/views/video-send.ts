/**
 * The sender's video card: prepares the file (client/media, loaded on first use), offers it, and shows the
 * offer's fate: waiting for the contact, declined, sending with progress, sent, or stopped and why.
 */
import { StreamError, type OutgoingStream } from '../../sdk/index.ts';
import type { Chat } from '../chat.ts';
import { el, icon } from '../dom.ts';
import { messageKey } from '../history.ts';
import { describeType, formatBytes, streamEndText } from '../words.ts';
import { progressView } from './progress.ts';

export function sendVideo(chat: Chat, peerKey: string, file: File): void {
  const contact = chat.contacts.get(peerKey);
  if (!contact) return;
  const peer = contact.name;
  const record = chat.videoRecord(peer, 'out', file.name, file.size, 'Preparing');

  const status = el('p', { class: 'video-status', text: 'Preparing the video…', attrs: { role: 'status' } });
  const note = el('p', { class: 'video-note', attrs: { hidden: true } });
  const sub = el('p', { class: 'muted', text: `${formatBytes(file.size)} · ${file.type || 'video'}` });
  const progress = progressView(`Sending ${file.name}`);
  progress.el.hidden = true;
  const cancel = el('button', { class: 'secondary', text: 'Cancel', attrs: { type: 'button' } });
  const card = el('div', { class: 'video-card outgoing', attrs: { 'data-video': 'out', 'data-state': 'preparing' } }, [
    el('div', { class: 'video-title' }, [icon('video'), el('span', { class: 'file-name', text: file.name })]),
    sub,
    status,
    progress.el,
    note,
    el('div', { class: 'video-actions' }, [cancel]),
  ]);
  chat.liveCards.set(messageKey(record), card);
  void chat.storeVideo(record);

  let stream: OutgoingStream | undefined;
  let stopped = false;
  const finish = (state: string, text: string) => {
    card.dataset.state = state;
    status.textContent = text;
    cancel.hidden = true;
    if (state !== 'done') progress.finish();
    void chat.updateVideoNote(record, text);
  };
  cancel.addEventListener('click', () => {
    stopped = true;
    if (stream) stream.cancel('cancelled by sender');
    else finish('cancelled', 'You cancelled the video.');
  });

  const run = async () => {
    const { prepare } = await import('../../media/prepare.ts');
    const maxChunk = chat.client.welcome?.limits.maxChunkBytes;
    const prepared = await prepare(file, maxChunk ? { chunkBytes: maxChunk } : {});
    if (stopped) return;
    const maxFile = chat.client.welcome?.limits.maxFileBytes;
    if (maxFile !== undefined && prepared.size > maxFile) {
      finish('failed', `This file is ${formatBytes(prepared.size)}; the server takes videos up to ${formatBytes(maxFile)}.`);
      return;
    }
    sub.textContent = `${formatBytes(prepared.size)} · ${describeType(prepared.container, prepared.mime)}`;
    if (prepared.note) {
      note.textContent = prepared.note;
      note.hidden = false;
    } else if (prepared.container === 'other' || prepared.container === 'mp4') {
      note.textContent = `${peer} can watch this once the whole file has arrived (it cannot be played while it arrives).`;
      note.hidden = false;
    }
    const s = chat.streams.sendFile(peer, prepared.chunks(), {
      name: file.name, size: prepared.size, mime: prepared.mime, container: prepared.container,
    });
    stream = s;
    card.dataset.state = 'offered';
    status.textContent = `Waiting for ${peer} to accept…`;
    void chat.updateVideoNote(record, `Offered to ${peer}`);
    s.on('accepted', () => {
      card.dataset.state = 'sending';
      status.textContent = `Sending to ${peer}…`;
      progress.el.hidden = false;
      progress.update(0, prepared.size);
    });
    s.on('progress', ({ bytes, size }) => {
      card.dataset.sent = String(bytes);
      progress.update(bytes, size);
    });
    try {
      const { bytes } = await s.done;
      progress.update(bytes, prepared.size);
      finish('done', `Sent. ${peer} has the whole video.`);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      const cancelled = err.reason === 'SENDER_CANCELLED' || err.reason === 'RECIPIENT_CANCELLED';
      finish(err.reason === 'DECLINED' ? 'declined' : cancelled ? 'cancelled' : 'failed',
        streamEndText(chat.streamReason(err), peer, 'sender', err.message));
    }
  };
  run().catch((err: unknown) => {
    finish('failed', `The video could not be sent: ${err instanceof Error ? err.message : String(err)}`);
  });
}
