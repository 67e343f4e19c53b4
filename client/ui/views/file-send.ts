/**
 * The sender's file card, for any file: looks at it (client/media/prepare.ts reads only its head and index),
 * offers it with its kind, and shows the offer's fate: waiting for the contact, declined, sending with
 * progress, paused by a disconnect (going on once both are back), sent, or stopped and why. The bytes sent are
 * the file's own (an MP4's index first when it sits at the end), so the recipient saves exactly this file.
 *
 * Once accepted, the file is copied into this browser's storage (client/ui/kept-sends.ts), so that a reload of
 * this page, or a newer page of this browser taking the session over, goes on with it: `resumeSending` brings
 * the card back, paused, and the transfer resumes from what the recipient has. A page that steps back for a
 * newer one lets go of its paused transfers (the newer page carries them on).
 *
 * The card's data attributes (state, sent, written, resumed, kept) are what the end-to-end tests read.
 */
import { StreamError, type FileMeta, type OutgoingStream, type RangedSource } from '../../sdk/index.ts';
import type { Chat } from '../chat.ts';
import { el, icon, type IconName } from '../dom.ts';
import { messageKey, type StoredMessage } from '../history.ts';
import { copyFile, forgetSend, keepSend, keptSends, loadCopy, sweepCopies, updateSend, type SendRecord } from '../kept-sends.ts';
import { knobs } from '../knobs.ts';
import { fileEndText, files, formatBytes, type FileKindWord } from '../words.ts';
import { kindOfMime } from './file-receive.ts';
import { progressView, type ProgressView } from './progress.ts';

const ICON: Record<FileKindWord, IconName> = { photo: 'photo', video: 'video', audio: 'audio', file: 'file' };

/** How long a transfer stays resumable when the server has not said yet (its STREAM_RESUME_SEC default). */
const RESUME_MS = 600_000;
/** How often, at most, a kept record's `until` is moved on while sending. */
const KEEP_EVERY_MS = 1000;

/** The parts of a sender's card. */
interface SendCard {
  card: HTMLElement;
  title: HTMLElement;
  sub: HTMLElement;
  status: HTMLElement;
  note: HTMLElement;
  progress: ProgressView;
  cancel: HTMLButtonElement;
}

function sendCard(name: string, size: number, state: string): SendCard {
  const status = el('p', { class: 'video-status', text: files().preparing, attrs: { role: 'status' } });
  const note = el('p', { class: 'video-note', attrs: { hidden: true } });
  const sub = el('p', { class: 'muted', text: formatBytes(size) });
  const progress = progressView(`Sending ${name}`);
  progress.el.hidden = true;
  const cancel = el('button', { class: 'secondary', text: files().cancel, attrs: { type: 'button' } });
  const title = el('div', { class: 'video-title' }, [icon('file'), el('span', { class: 'file-name', text: name })]);
  const card = el('div', { class: 'video-card file-card outgoing', attrs: { 'data-video': 'out', 'data-state': state } }, [
    title, sub, status, progress.el, note, el('div', { class: 'video-actions' }, [cancel]),
  ]);
  return { card, title, sub, status, note, progress, cancel };
}

export function sendFile(chat: Chat, peerKey: string, file: File): void {
  const contact = chat.contacts.get(peerKey);
  if (!contact) return;
  const peer = contact.name;
  const record = chat.videoRecord(peer, 'out', file.name, file.size, 'Preparing', kindOfMime(file.type));
  const parts = sendCard(file.name, file.size, 'preparing');
  const { card, title, sub, status, note, cancel } = parts;
  // Preparation has its own bar: it reads the file's head and index, which for a large index takes a while.
  const looking = progressView(`${files().preparing} ${file.name}`);
  parts.progress.el.before(looking.el);
  chat.liveCards.set(messageKey(record), card);
  void chat.storeVideo(record);

  let offered = false;
  const preparation = new AbortController();
  const stopPreparing = () => {
    preparation.abort(new Error('cancelled by sender'));
    card.dataset.state = 'cancelled';
    status.textContent = fileEndText('SENDER_CANCELLED', peer, 'sender', 'file', '');
    cancel.hidden = true;
    parts.progress.finish();
    void chat.updateVideoNote(record, status.textContent);
  };
  cancel.addEventListener('click', () => {
    if (!offered) stopPreparing();
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
    if (preparation.signal.aborted) return;
    const kind = prepared.kind;
    card.dataset.kind = kind;
    title.firstChild?.replaceWith(icon(ICON[kind]));
    const maxFile = chat.client.welcome?.limits.maxFileBytes;
    if (maxFile !== undefined && prepared.size > maxFile) {
      card.dataset.state = 'failed';
      status.textContent = files().tooLargeForServer(formatBytes(prepared.size), formatBytes(maxFile));
      cancel.hidden = true;
      void chat.updateVideoNote(record, status.textContent);
      return;
    }
    sub.textContent = `${formatBytes(prepared.size)} · ${files().kindLabel[kind]}`;
    if ((kind === 'video' || kind === 'audio') && prepared.container === 'other') {
      note.textContent = files().peerPlaysWhenComplete(peer);
      note.hidden = false;
    }
    const meta: FileMeta = { name: file.name, size: prepared.size, mime: prepared.mime, container: prepared.container };
    const s = chat.streams.sendFile(peer, rangedSource(file, prepared), meta);
    offered = true;
    card.dataset.state = 'offered';
    status.textContent = files().waiting(peer);
    void chat.updateVideoNote(record, `Offered to ${peer}`);
    // Accepted: the file is copied for a reload or a newer page to go on with. The record is written first (not
    // copied yet), so that no page's sweep deletes the copy being made.
    const keep = () => {
      card.dataset.kept = 'copying';
      keepSend(chat.meKey, { tid: s.tid, to: peer, meta, ranges: prepared.ranges, until: Date.now() + RESUME_MS, record, copied: false });
      copyFile(s.tid, file).then(() => {
        if (follow.over()) {
          forgetSend(chat.meKey, s.tid); // over while the copy was being made
          return;
        }
        updateSend(chat.meKey, s.tid, { copied: true });
        card.dataset.kept = 'yes';
        if (s.paused) note.textContent = files().senderKept;
      }, (err: unknown) => {
        console.warn('could not keep a copy of the file for resuming', err);
        forgetSend(chat.meKey, s.tid);
        card.dataset.kept = 'no';
        if (s.paused) note.textContent = files().senderKeepOpen;
      });
    };
    const follow = followSend(chat, parts, s, record, peer, kind, keep);
  };
  run().catch((err: unknown) => {
    console.warn('sending failed', err);
    card.dataset.state = 'failed';
    status.textContent = files().couldNotSend;
    cancel.hidden = true;
    parts.progress.finish();
    void chat.updateVideoNote(record, status.textContent);
  });
}

/**
 * Drives a card from its stream until the transfer is over: progress, paused (with Give up), resumed, and the
 * end, which forgets the kept copy. `onAccepted` runs at the first acceptance. A chat that stops, or a page
 * that steps back for a newer one, lets go of the transfer without ending it: the copy stays for the next page.
 */
function followSend(
  chat: Chat, parts: SendCard, s: OutgoingStream, record: StoredMessage, peer: string, kind: FileKindWord,
  onAccepted?: () => void,
): { over: () => boolean } {
  const { card, status, note, progress, cancel } = parts;
  let over = false;
  /** Let go (chat stopped, or another page carries the transfer on): the card no longer speaks for it. */
  let released = false;
  const kept = () => card.dataset.kept === 'yes';
  const finish = (state: string, text: string) => {
    if (over) return;
    over = true;
    card.dataset.state = state;
    status.textContent = text;
    cancel.hidden = true;
    if (state !== 'done') progress.finish();
    offConn();
    offStop();
    if (!released) forgetSend(chat.meKey, s.tid, card.dataset.kept !== undefined);
    void chat.updateVideoNote(record, text);
  };
  const offStop = chat.onStop(() => {
    released = true;
  });
  // A page that stepped back for a newer page of this browser: the newer one goes on with the kept copy.
  const offConn = chat.client.on('state', ({ to }) => {
    if (to === 'open' && s.paused && card.dataset.state === 'paused') status.textContent = files().pausedWaitingFor(peer);
    const newerPage = chat.steppedBack || chat.client.closedReason === 'replaced';
    if (to === 'closed' && newerPage && s.paused && kept() && !released) {
      released = true;
      s.letGo();
      finish('elsewhere', files().goesOnElsewhere);
    }
  });
  cancel.addEventListener('click', () => s.cancel('cancelled by sender'));

  let keptAt = 0;
  s.on('accepted', () => {
    card.dataset.state = 'sending';
    status.textContent = files().sending(peer);
    progress.el.hidden = false;
    progress.update(0, s.meta.size);
    onAccepted?.();
  });
  s.on('progress', ({ bytes, size }) => {
    card.dataset.sent = String(bytes);
    card.dataset.written = String(s.written);
    progress.update(bytes, size);
    // A reload cuts the transfer about now: the kept record says until when it can resume.
    const now = Date.now();
    if (now - keptAt >= KEEP_EVERY_MS) {
      keptAt = now;
      updateSend(chat.meKey, s.tid, { until: now + RESUME_MS });
    }
  });
  // Cut by a disconnect: the transfer waits for the contact (or the connection) and goes on from what they have.
  let noteBefore = { text: note.textContent ?? '', hidden: note.hidden };
  const showPaused = (why: StreamError) => {
    if (card.dataset.state !== 'paused') noteBefore = { text: note.textContent ?? '', hidden: note.hidden };
    card.dataset.state = 'paused';
    status.textContent = why.reason === 'DISCONNECTED' && chat.client.state !== 'open' ? files().pausedOffline : files().pausedWaitingFor(peer);
    note.textContent = card.dataset.unreadable === 'yes' ? files().unreadable(peer) : kept() ? files().senderKept : files().senderKeepOpen;
    note.hidden = false;
    cancel.textContent = files().giveUp;
    cancel.hidden = false;
  };
  s.on('paused', ({ why, until }) => {
    showPaused(why);
    updateSend(chat.meKey, s.tid, { until });
  });
  s.on('resumed', () => {
    card.dataset.state = 'sending';
    card.dataset.resumed = String(Number(card.dataset.resumed ?? 0) + 1);
    status.textContent = files().sending(peer);
    note.textContent = noteBefore.text;
    note.hidden = noteBefore.hidden;
    cancel.textContent = files().cancel;
    progress.el.hidden = false;
    progress.update(s.sent, s.meta.size);
  });
  if (s.paused) showPaused(s.paused.why);
  s.done.then(({ bytes }) => {
    progress.update(bytes, s.meta.size);
    finish('done', files().sent(peer, files().noun[kind]));
  }, (err: unknown) => {
    if (released) return;
    if (!(err instanceof StreamError)) throw err;
    const isCancel = err.reason === 'SENDER_CANCELLED' || err.reason === 'RECIPIENT_CANCELLED';
    finish(err.reason === 'DECLINED' ? 'declined' : isCancel ? 'cancelled' : 'failed',
      fileEndText(chat.streamReason(err), peer, 'sender', kind, err.message));
  }).catch((err: unknown) => {
    console.warn('sending failed', err);
    finish('failed', files().couldNotSend);
  });
  return { over: () => over };
}

/**
 * At page start, before the client's first `welcome` can bring a `streamResumed`: every transfer a previous
 * page of this account was sending, with its copy kept, gets its card back, paused, and goes on when the
 * recipient asks. A copy that is missing or can no longer be read is said so on the card, with Give up.
 * Copies no live record names are deleted.
 *
 * Synchronous up to the registration of every transfer (the copies are read lazily), so that called right
 * after `Chat.start` it runs before any frame of the new connection is handled.
 */
export function resumeSending(chat: Chat): void {
  for (const r of keptSends(chat.meKey)) resumeOne(chat, r);
  sweepCopies().catch((err: unknown) => console.warn('could not sweep kept copies of sent files', err));
}

function resumeOne(chat: Chat, r: SendRecord): void {
  const kind = kindOfMime(r.meta.mime);
  const parts = sendCard(r.meta.name, r.meta.size, 'paused');
  parts.card.dataset.kind = kind;
  parts.card.dataset.kept = r.copied ? 'yes' : 'no';
  parts.title.firstChild?.replaceWith(icon(ICON[kind]));
  parts.sub.textContent = `${formatBytes(r.meta.size)} · ${files().kindLabel[kind]}`;
  // The copy, checked once: there, of the right size, and its first byte readable.
  const copy: Promise<Blob> = (r.copied ? loadCopy(r.tid) : Promise.resolve(undefined)).then(async (b) => {
    if (!b || b.size !== r.meta.size) throw new Error('the kept copy of the file is gone');
    if (b.size > 0) await b.slice(0, 1).arrayBuffer();
    return b;
  });
  const source: RangedSource = {
    ranges: r.ranges,
    read: async (start, end) => new Uint8Array(await (await copy).slice(start, end).arrayBuffer()),
  };
  const s = chat.streams.resumeOutgoing({ tid: r.tid, to: r.to, meta: r.meta, until: r.until }, source);
  chat.liveCards.set(messageKey(r.record), parts.card);
  chat.showCard(r.record);
  followSend(chat, parts, s, r.record, r.to, kind);
  copy.catch((err: unknown) => {
    console.warn('a file kept for resuming cannot be read', err);
    parts.card.dataset.unreadable = 'yes';
    if (s.paused) parts.note.textContent = files().unreadable(r.to);
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
