/**
 * The sender's file card, for any file: looks at it (client/media/prepare.ts reads only its head and index),
 * offers it with its kind, and shows the offer's fate: waiting for the contact, declined, sending with
 * progress, paused by a disconnect (going on once both are back; a reload of this page loses the file), sent,
 * or stopped and why. The bytes sent are the file's own (an MP4's index first when it sits at
 * the end), so the recipient saves exactly this file.
 */
import { StreamError, type OutgoingStream } from '../../sdk/index.ts';
import type { Chat } from '../chat.ts';
import { el, icon, type IconName } from '../dom.ts';
import { messageKey } from '../history.ts';
import { knobs } from '../knobs.ts';
import { fileEndText, files, formatBytes, type FileKindWord } from '../words.ts';
import { kindOfMime } from './file-receive.ts';
import { progressView } from './progress.ts';

const ICON: Record<FileKindWord, IconName> = { photo: 'photo', video: 'video', audio: 'audio', file: 'file' };

export function sendFile(chat: Chat, peerKey: string, file: File): void {
  const contact = chat.contacts.get(peerKey);
  if (!contact) return;
  const peer = contact.name;
  const record = chat.videoRecord(peer, 'out', file.name, file.size, 'Preparing', kindOfMime(file.type));

  const status = el('p', { class: 'video-status', text: files().preparing, attrs: { role: 'status' } });
  const note = el('p', { class: 'video-note', attrs: { hidden: true } });
  const sub = el('p', { class: 'muted', text: formatBytes(file.size) });
  const progress = progressView(`Sending ${file.name}`);
  progress.el.hidden = true;
  // Preparation has its own bar: it reads the file's head and index, which for a large index takes a while.
  const looking = progressView(`${files().preparing} ${file.name}`);
  const cancel = el('button', { class: 'secondary', text: files().cancel, attrs: { type: 'button' } });
  const title = el('div', { class: 'video-title' }, [icon('file'), el('span', { class: 'file-name', text: file.name })]);
  const card = el('div', { class: 'video-card file-card outgoing', attrs: { 'data-video': 'out', 'data-state': 'preparing' } }, [
    title, sub, status, looking.el, progress.el, note, el('div', { class: 'video-actions' }, [cancel]),
  ]);
  chat.liveCards.set(messageKey(record), card);
  void chat.storeVideo(record);

  let stream: OutgoingStream | undefined;
  let stopped = false;
  const preparation = new AbortController();
  let kind: FileKindWord = 'file';
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
    else {
      preparation.abort(new Error('cancelled by sender'));
      finish('cancelled', fileEndText('SENDER_CANCELLED', peer, 'sender', kind, ''));
    }
  });

  const run = async () => {
    const { prepare, rangedSource } = await import('../../media/prepare.ts');
    let prepared;
    try {
      prepared = await prepare(file, {
        signal: preparation.signal,
        rate: knobs.prepareRate,
        onProgress: (at, size) => {
          card.dataset.prepared = String(at);
          looking.update(at, size);
        },
      });
    } catch (err) {
      if (!preparation.signal.aborted) throw err;
      card.dataset.prepare = 'stopped';
      looking.finish();
      return;
    }
    looking.el.hidden = true;
    if (stopped) return;
    kind = prepared.kind;
    card.dataset.kind = kind;
    title.firstChild?.replaceWith(icon(ICON[kind]));
    const maxFile = chat.client.welcome?.limits.maxFileBytes;
    if (maxFile !== undefined && prepared.size > maxFile) {
      finish('failed', files().tooLargeForServer(formatBytes(prepared.size), formatBytes(maxFile)));
      return;
    }
    sub.textContent = `${formatBytes(prepared.size)} · ${files().kindLabel[kind]}`;
    if ((kind === 'video' || kind === 'audio') && prepared.container === 'other') {
      note.textContent = files().peerPlaysWhenComplete(peer);
      note.hidden = false;
    }
    const s = chat.streams.sendFile(peer, rangedSource(file, prepared), {
      name: file.name, size: prepared.size, mime: prepared.mime, container: prepared.container,
    });
    stream = s;
    card.dataset.state = 'offered';
    status.textContent = files().waiting(peer);
    void chat.updateVideoNote(record, `Offered to ${peer}`);
    s.on('accepted', () => {
      card.dataset.state = 'sending';
      status.textContent = files().sending(peer);
      progress.el.hidden = false;
      progress.update(0, prepared.size);
    });
    s.on('progress', ({ bytes, size }) => {
      card.dataset.sent = String(bytes);
      card.dataset.written = String(s.written);
      progress.update(bytes, size);
    });
    // Cut by a disconnect: the transfer waits for the contact (or the connection) and goes on from what they have.
    let noteBefore = { text: '', hidden: true };
    s.on('paused', ({ why }) => {
      if (card.dataset.state !== 'paused') noteBefore = { text: note.textContent ?? '', hidden: note.hidden };
      card.dataset.state = 'paused';
      status.textContent = why.reason === 'DISCONNECTED' ? files().pausedOffline : files().pausedWaitingFor(peer);
      note.textContent = files().senderKeepOpen;
      note.hidden = false;
      cancel.textContent = files().giveUp;
    });
    s.on('resumed', () => {
      card.dataset.state = 'sending';
      card.dataset.resumed = String(Number(card.dataset.resumed ?? 0) + 1);
      status.textContent = files().sending(peer);
      note.textContent = noteBefore.text;
      note.hidden = noteBefore.hidden;
      cancel.textContent = files().cancel;
    });
    try {
      const { bytes } = await s.done;
      progress.update(bytes, prepared.size);
      finish('done', files().sent(peer, files().noun[kind]));
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      const isCancel = err.reason === 'SENDER_CANCELLED' || err.reason === 'RECIPIENT_CANCELLED';
      finish(err.reason === 'DECLINED' ? 'declined' : isCancel ? 'cancelled' : 'failed',
        fileEndText(chat.streamReason(err), peer, 'sender', kind, err.message));
    }
  };
  run().catch((err: unknown) => {
    console.warn('sending failed', err);
    finish('failed', files().couldNotSend);
  });
}

/**
 * Makes `target` take files dropped on it or pasted into it (when `enabled()`), each handed to `send`.
 * While files are dragged over it, it carries the `dropping` class.
 */
export function acceptFileDrops(target: HTMLElement, enabled: () => boolean, send: (file: File) => void): void {
  const hasFiles = (e: DragEvent) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  target.addEventListener('dragover', (e) => {
    if (!hasFiles(e) || !enabled()) return;
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    target.classList.add('dropping');
  });
  target.addEventListener('dragleave', (e) => {
    if (e.target === target) target.classList.remove('dropping');
  });
  target.addEventListener('drop', (e) => {
    target.classList.remove('dropping');
    if (!hasFiles(e) || !enabled()) return;
    e.preventDefault();
    for (const file of [...(e.dataTransfer?.files ?? [])]) send(file);
  });
  target.addEventListener('paste', (e) => {
    const pasted = [...(e.clipboardData?.files ?? [])];
    if (pasted.length === 0 || !enabled()) return;
    e.preventDefault();
    for (const file of pasted) send(file);
  });
}
