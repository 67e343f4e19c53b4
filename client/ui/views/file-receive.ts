/**
 * The recipient's file card, for any file: the offer (name, size, kind) with Watch / Listen / Receive and
 * Decline; once accepted, the bytes go to the file store (client/media/file-store.ts: the Origin Private File
 * System, so memory stays flat) as they arrive, a video or audio plays from the store while it fills when
 * the browser can decode it, a photo appears as a thumbnail (full size on click) once complete, and Save
 * gives the very file that was sent.
 *
 * A transfer cut by a disconnect shows "paused, waiting for …" with Give up and goes on by itself once both
 * sides are back; its file stays on disk and the ranges it holds are written down (kept-transfers.ts), so
 * that after a reload `resumeKeptTransfers` brings the card back, paused, and the transfer resumes.
 *
 * The card's data attributes (kind, state, mode, playable, received, kept, resumed, firstPlayReceived) are
 * what the end-to-end tests read.
 */
import { StreamError, type IncomingStream } from '../../sdk/index.ts';
import { storeName, type FileStore } from '../../media/file-store.ts';
import { kindOf } from '../../media/kind.ts';
import type { Player } from '../../media/player.ts';
import type { Chat } from '../chat.ts';
import { el, icon, type IconName } from '../dom.ts';
import { messageKey } from '../history.ts';
import { allKeptFiles, forgetTransfer, keepTransfer, keptTransfers, type KeptRecord } from '../kept-transfers.ts';
import { nameKey } from '../../../shared/names.ts';
import { knobs } from '../knobs.ts';
import { fileEndText, files, formatBytes, type FileKindWord } from '../words.ts';
import { progressView } from './progress.ts';

/** Most bytes a file may take in memory when the browser gives the page no disk storage. */
const MEMORY_CAP_BYTES = 512 * 1024 * 1024;

const ICON: Record<FileKindWord, IconName> = { photo: 'photo', video: 'video', audio: 'audio', file: 'file' };

export { kindOf as kindOfMime } from '../../media/kind.ts';

function cancelled(err: StreamError): boolean {
  return err.reason === 'SENDER_CANCELLED' || err.reason === 'RECIPIENT_CANCELLED';
}

/** Offers `blob` to save under `name` (an OPFS-backed File downloads from disk, not from memory). */
function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = el('a', { attrs: { href: url, download: name, rel: 'noopener' } });
  document.body.append(a);
  a.click();
  a.remove();
  // Revoking at once can cancel the download in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** How long a transfer stays resumable when the server has not said yet (its STREAM_RESUME_SEC default). */
const RESUME_MS = 600_000;
/** How often the ranges on disk are written down for a reload while receiving. */
const KEEP_EVERY_MS = 500;

/**
 * `kept`: a transfer this page received part of before a reload (client/ui/kept-transfers.ts); `s` is then the
 * SDK's paused stream for it (`Streams.resumeIncoming`), and the card opens paused, on the kept file.
 */
export function receiveFile(chat: Chat, s: IncomingStream, kept?: KeptRecord): void {
  const peer = s.from;
  const meta = s.meta;
  const kind = kindOf(meta.mime);
  const noun = files().noun[kind];
  const baseType = meta.mime.split(';')[0]!.trim() || 'application/octet-stream';
  const record = kept?.record ?? chat.videoRecord(peer, 'in', meta.name, meta.size, `Offered by ${peer}`, kind);
  const diskName = kept?.file ?? storeName(nameKey(peer), s.tid);
  let until = kept?.until ?? Date.now() + RESUME_MS;

  const status = el('p', { class: 'video-status', text: files().offered(peer, noun), attrs: { role: 'status' } });
  const note = el('p', { class: 'video-note', attrs: { hidden: true } });
  const progress = progressView(`Receiving ${meta.name}`);
  progress.el.hidden = true;
  const mediaSlot = el('div', { class: kind === 'audio' ? 'audio-slot' : 'video-slot', attrs: { hidden: true } });
  const accept = el('button', { class: 'primary', text: files().accept[kind], attrs: { type: 'button' } });
  const decline = el('button', { class: 'secondary', text: files().decline, attrs: { type: 'button' } });
  const cancel = el('button', { class: 'secondary', text: files().stop, attrs: { type: 'button', hidden: true } });
  const save = el('button', { class: 'secondary save-button', attrs: { type: 'button', hidden: true } }, [icon('download'), files().save]);
  const card = el('div', {
    class: `video-card file-card incoming kind-${kind}`,
    attrs: { 'data-video': 'in', 'data-kind': kind, 'data-state': 'offered', 'data-size': String(meta.size), 'data-received': '0' },
  }, [
    el('div', { class: 'video-title' }, [icon(ICON[kind]), el('span', { class: 'file-name', text: meta.name })]),
    el('p', { class: 'muted', text: `${formatBytes(meta.size)} · ${files().kindLabel[kind]}` }),
    mediaSlot,
    status,
    progress.el,
    note,
    el('div', { class: 'video-actions' }, [accept, decline, cancel, save]),
  ]);
  chat.liveCards.set(messageKey(record), card);
  if (kept) chat.showCard(record);
  else void chat.storeVideo(record);

  let player: Player | undefined;
  let store: FileStore | undefined;
  let whole: Blob | undefined;
  let settled = false;
  /** Writes down what is on disk, for a reload to resume from (disk stores only: memory does not survive). */
  const keep = () => {
    if (settled || !store || store.where !== 'disk') return;
    if (card.dataset.kept === String(store.held) && card.dataset.keptUntil === String(until)) return;
    keepTransfer(chat.meKey, { tid: s.tid, from: peer, meta, file: diskName, held: store.heldRanges(), until, record });
    card.dataset.kept = String(store.held);
    card.dataset.keptUntil = String(until);
  };
  let keeper: ReturnType<typeof setInterval> | undefined;
  // The chat stopping (sign-out, or signing in again after a takeover) is not the transfer's end: the file and
  // its record stay for the next chat of this account to resume; this card only lets go of them.
  const offStop = chat.onStop(() => {
    if (settled) return;
    settled = true;
    clearInterval(keeper);
    player?.abort('stopped');
    store?.release('the chat stopped');
  });
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
    clearInterval(keeper);
    offStop();
    forgetTransfer(chat.meKey, diskName);
    if (state !== 'done') {
      progress.finish();
      player?.abort(state);
      store?.discard(state);
    }
    void chat.updateVideoNote(record, text);
  };

  // Cancelled by either side, or cut by a disconnect or takeover: say so at once.
  s.on('aborted', (err) => {
    finish(cancelled(err) ? 'cancelled' : 'failed', fileEndText(chat.streamReason(err), peer, 'recipient', kind, err.message));
  });
  s.on('progress', ({ bytes, size }) => {
    card.dataset.received = String(bytes);
    progress.update(bytes, size);
  });
  // Cut by a disconnect (or a reload): what arrived stays on disk, written down, and the transfer goes on from it.
  const showPaused = (why: StreamError) => {
    card.dataset.state = 'paused';
    status.textContent = why.reason === 'DISCONNECTED' ? files().pausedOffline : files().pausedWaitingFor(peer);
    cancel.textContent = files().giveUp;
    cancel.hidden = false;
  };
  s.on('paused', ({ why, until: u }) => {
    until = u;
    showPaused(why);
    void store?.flush().then(keep, (err: unknown) => console.warn('could not flush the file', err));
  });
  s.on('resumed', () => {
    card.dataset.state = 'receiving';
    card.dataset.resumed = String(Number(card.dataset.resumed ?? 0) + 1);
    status.textContent = files().receiving(peer);
    cancel.textContent = files().stop;
  });

  decline.addEventListener('click', () => {
    s.decline();
    finish('declined', files().youDeclined(noun));
  });
  cancel.addEventListener('click', () => s.cancel('cancelled by recipient'));
  save.addEventListener('click', () => {
    if (whole) saveBlob(whole, meta.name);
    else say(files().notSaved);
  });

  const start = () => {
    accept.disabled = true;
    decline.disabled = true;
    void receive().catch((err: unknown) => {
      console.warn('receiving failed', err);
      if (!settled) s.cancel('the recipient could not store the file');
      finish('failed', files().storeFailed);
    });
  };
  accept.addEventListener('click', start);

  /** Shows a video or audio player fed from the store, when this browser can decode it. */
  const play = async (filled: Promise<Blob>) => {
    const [{ createPlayer }, { playability, codecName }, { feedPlayer }] = await Promise.all([
      import('../../media/player.ts'), import('../../media/playable.ts'), import('../../media/receive.ts'),
    ]);
    const media = kind === 'audio'
      ? el('audio', { attrs: { controls: true, preload: 'auto' } })
      : el('video', { attrs: { controls: true, playsinline: true, preload: 'auto' } });
    const verdict = await playability(meta.mime, media);
    card.dataset.playable = verdict.ok ? 'yes' : verdict.why;
    if (!verdict.ok) {
      card.dataset.mode = 'download';
      say(verdict.why === 'picture' ? files().pictureCannotShow(codecName(verdict.codec)) : files().cannotPlayHere(noun));
      return;
    }
    if (settled || !store) return;
    mediaSlot.append(media);
    mediaSlot.hidden = false;
    const container = meta.container === 'mp4' ? 'fmp4' : meta.container;
    const p = createPlayer({ video: media, mime: meta.mime, container, size: meta.size, memoryCapBytes: 0, keep: false });
    player = p;
    const showMode = (mode: string, reason?: string) => {
      card.dataset.mode = mode;
      if (mode === 'blob') say(files().playsWhenComplete(noun));
      if (reason) console.warn('playback while arriving:', reason);
      if (mode === 'download') {
        mediaSlot.hidden = true;
        say(files().playbackProblem);
      }
    };
    p.on('mode', ({ mode }) => showMode(mode));
    p.on('fallback', ({ mode }) => showMode(mode, mode === 'blob' ? files().playsWhenComplete(noun) : undefined));
    p.on('playing', () => {
      card.dataset.firstPlayReceived ??= String(s.received);
    });
    p.on('blocked', () => say(files().pressPlay));
    p.on('error', ({ message }) => {
      console.warn('player error', message);
      say(files().playbackProblem);
    });
    await feedPlayer(p, store, meta.container, filled);
  };

  const receive = async () => {
    const [{ openFileStore }, { storeAll }] = await Promise.all([import('../../media/file-store.ts'), import('../../media/receive.ts')]);
    if (settled) return;
    store = await openFileStore(meta.size, { memoryCapBytes: MEMORY_CAP_BYTES, name: diskName, ...(kept ? { resume: { held: kept.held } } : {}) });
    card.dataset.store = store.where;
    accept.hidden = true;
    decline.hidden = true;
    cancel.hidden = false;
    progress.el.hidden = false;
    progress.update(store.held, meta.size);
    card.dataset.received = String(store.held);
    if (kept && s.paused) {
      showPaused(s.paused.why);
    } else if (kept) {
      // Resumed already, while the file was being opened.
      card.dataset.state = 'receiving';
      status.textContent = files().receiving(peer);
    } else {
      card.dataset.state = 'receiving';
      status.textContent = files().receiving(peer);
      s.accept(knobs.recvWindow);
    }
    keep();
    keeper = setInterval(keep, KEEP_EVERY_MS);
    const filled = storeAll(s.pieces(), store, baseType, { rate: knobs.recvRate, stopped: () => settled });
    filled.catch(() => undefined); // reported below or by the 'aborted' listener
    // After a reload the player would start from a file already part-filled: it plays once complete instead.
    const playing = (kind === 'video' || kind === 'audio') && !kept ? play(filled) : Promise.resolve();
    try {
      whole = await filled;
    } catch (err) {
      if (err instanceof StreamError || settled) return;
      throw err;
    }
    progress.update(meta.size, meta.size);
    save.hidden = false;
    if (kind === 'photo') showPhoto(whole);
    finish('done', card.dataset.mode === 'download' || kind === 'file' ? files().arrivedSaveToOpen : files().arrived(noun));
    await playing;
  };

  const showPhoto = (blob: Blob) => {
    const url = URL.createObjectURL(blob);
    const img = el('img', { class: 'photo-thumb', attrs: { src: url, alt: files().photoAlt(meta.name), title: files().openFull, tabindex: '0' } });
    const toggle = () => img.classList.toggle('full');
    img.addEventListener('click', toggle);
    img.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ' || (e.key === 'Escape' && img.classList.contains('full'))) toggle();
    });
    img.addEventListener('error', () => {
      mediaSlot.hidden = true;
      card.dataset.mode = 'download';
      say(files().cannotPlayHere(noun));
    });
    img.addEventListener('load', () => { card.dataset.mode = 'shown'; });
    mediaSlot.append(img);
    mediaSlot.hidden = false;
  };

  if (kept) start(); // accepted before the reload: straight back to receiving (paused until resumed)
}

/**
 * At page start: the files of transfers a reload cut are kept on disk (every other leftover is deleted), and
 * each such transfer gets its card back, paused, asking to resume once connected.
 */
export async function resumeKeptTransfers(chat: Chat): Promise<void> {
  const mine = keptTransfers(chat.meKey);
  const { sweepStores } = await import('../../media/file-store.ts');
  await sweepStores(allKeptFiles());
  for (const r of mine) {
    const s = chat.streams.resumeIncoming({ tid: r.tid, from: r.from, meta: r.meta, held: r.held, until: r.until }, knobs.recvWindow);
    receiveFile(chat, s, r);
  }
}
