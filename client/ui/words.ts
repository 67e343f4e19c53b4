/**
 * Everything the page says about codes, in plain words of the current language (the words themselves are in
 * the catalogues under i18n/; sizes, durations and times are formatted there with Intl and re-exported here).
 */
import type { ErrorCodeName } from '../../shared/codes.ts';
import type { StreamEndReason } from '../sdk/stream-types.ts';
import { files as enFiles, type FilesWords, type FileKindWord } from './i18n/files-en.ts';
import { filesZhCN } from './i18n/files-zh-CN.ts';
import { locale, t, type Locale } from './i18n/index.ts';

const FILES: Record<Locale, FilesWords> = { en: enFiles, 'zh-CN': filesZhCN };

export { formatBytes, formatDuration, formatRate, formatTime } from './i18n/index.ts';

/** Sign-up and sign-in failures. The server's own message is used when we have nothing better. */
export function authErrorText(code: ErrorCodeName | 'NETWORK', serverMessage: string): string {
  switch (code) {
    case 'BAD_CREDENTIALS': return t('auth.err.badCredentials');
    case 'NAME_TAKEN': return t('auth.err.nameTaken');
    case 'BAD_NAME': return t('auth.err.badName');
    case 'BAD_PASSWORD': return t('auth.err.badPassword');
    case 'RATE_LIMITED': return t('auth.err.rateLimited');
    case 'NETWORK': return t('auth.err.network');
    case 'SHUTTING_DOWN': return t('auth.err.shuttingDown');
    case 'FORBIDDEN_ORIGIN': return t('auth.err.forbiddenOrigin');
    default: return capitalise(serverMessage);
  }
}

/** Why a text message was refused for good. */
export function sendErrorText(code: ErrorCodeName, serverMessage: string, to: string): string {
  switch (code) {
    case 'UNKNOWN_CONTACT': return t('send.unknownContact', to);
    case 'QUEUE_FULL': return t('send.queueFull', to);
    case 'TEXT_EMPTY': return t('send.empty');
    case 'TEXT_TOO_LONG': return t('send.tooLong');
    default: return capitalise(serverMessage);
  }
}

/** Why a room request or a room message was refused; `subject` is the room or member it was about. */
export function roomErrorText(code: ErrorCodeName | 'NOT_CONNECTED', serverMessage: string, subject: string): string {
  switch (code) {
    case 'BAD_NAME': return t('rooms.err.badName');
    case 'ROOM_UNKNOWN': return t('rooms.err.unknown', subject);
    case 'ROOM_EXISTS': return t('rooms.err.exists', subject);
    case 'NOT_A_MEMBER': return t('rooms.err.notMember');
    case 'NOT_THE_OWNER': return t('rooms.err.notOwner');
    case 'NOT_INVITED': return t('rooms.err.notInvited', subject);
    case 'ROOM_FULL': return t('rooms.err.full');
    case 'OWNER_CANNOT_LEAVE': return t('rooms.err.ownerCannotLeave');
    case 'MESSAGE_UNKNOWN': return t('rooms.err.messageUnknown');
    case 'ROOMS_SINGLE_NODE': return t('rooms.err.singleNode');
    case 'UNKNOWN_CONTACT': return t('send.unknownContact', subject);
    case 'QUEUE_FULL': return t('rooms.err.logFull');
    case 'TEXT_EMPTY': return t('send.empty');
    case 'TEXT_TOO_LONG': return t('send.tooLong');
    case 'NOT_CONNECTED': return t('rooms.err.notConnected');
    default: return capitalise(serverMessage);
  }
}

/** Why a video stream stopped, told from the side of `me` (sender or recipient). */
export function streamEndText(reason: StreamEndReason, peer: string, side: 'sender' | 'recipient', serverMessage: string): string {
  switch (reason) {
    case 'DECLINED': return side === 'sender' ? t('video.declinedBy', peer) : t('video.youDeclined');
    case 'SENDER_CANCELLED': return side === 'sender' ? t('video.youCancelled') : t('video.cancelledBy', peer);
    case 'RECIPIENT_CANCELLED': return side === 'sender' ? t('video.stoppedBy', peer) : t('video.youStopped');
    case 'SENDER_DISCONNECTED': return t('video.peerOffline', peer);
    case 'RECIPIENT_DISCONNECTED': return t('video.peerOffline', peer);
    case 'RECIPIENT_OFFLINE': return t('video.recipientOffline', peer);
    case 'TAKEOVER': return t('video.takeover', peer);
    case 'SERVER_SHUTDOWN': return t('video.serverShutdown');
    case 'DISCONNECTED': return t('video.disconnected');
    case 'UNREADABLE': return files().unreadableStopped(peer);
    case 'STREAM_LIMIT': return t('video.streamLimit');
    case 'FILE_TOO_LARGE': return t('video.fileTooLarge');
    case 'STREAM_SELF': return t('video.self');
    case 'UNKNOWN_CONTACT': return t('video.unknownContact', peer);
    case 'PROTOCOL': return t('video.stopped', `${serverMessage}.`);
    default: return t('video.stopped', serverMessage);
  }
}

function capitalise(s: string): string {
  const trimmed = s.trim();
  if (!trimmed) return t('error.generic');
  const first = trimmed[0]!.toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** "MP4 video", "WebM video", ... from an offer's container and MIME type. */
export function describeType(container: string, mime: string): string {
  const base = mime.split(';')[0]!.trim();
  switch (container) {
    case 'fmp4':
    case 'mp4': return base.startsWith('audio/') ? t('video.mp4Audio') : t('video.mp4Video');
    case 'webm': return base.startsWith('audio/') ? t('video.webmAudio') : t('video.webmVideo');
    default: return base || t('video.file');
  }
}

/**
 * Words of file transfer: each names what is sent (photo, video, audio, file), never "video" for everything.
 * One object per language (i18n/files-en.ts is the reference, i18n/files-zh-CN.ts matches it key for key).
 */
export type { FileKindWord, FilesWords } from './i18n/files-en.ts';

/** The file-transfer words of the current language. */
export function files(): FilesWords {
  return FILES[locale()];
}

/** Why a file transfer stopped, told from the side of `me`, naming what was sent. */
export function fileEndText(reason: StreamEndReason, peer: string, side: 'sender' | 'recipient', kind: FileKindWord, serverMessage: string): string {
  const words = files();
  if (reason === 'TRANSFER_UNKNOWN') return words.cannotResume(peer);
  if (reason === 'UNREADABLE') return words.unreadableStopped(peer);
  const noun = words.noun[kind];
  // The video wording covers every case in every language; only the noun changes.
  return streamEndText(reason, peer, side, serverMessage).replaceAll(`${words.noun.video}s`, `${noun}s`).replaceAll(words.noun.video, noun);
}
