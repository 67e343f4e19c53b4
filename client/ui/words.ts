/** Everything the page says about codes, sizes and times, in plain words. */
import type { AbortReasonName, ErrorCodeName } from '../../shared/codes.ts';

/** Sign-up and sign-in failures. The server's own message is used when we have nothing better. */
export function authErrorText(code: ErrorCodeName | 'NETWORK', serverMessage: string): string {
  switch (code) {
    case 'BAD_CREDENTIALS': return 'That name and password do not match. Check both and try again.';
    case 'NAME_TAKEN': return 'Someone already has that name. Pick another one.';
    case 'BAD_NAME': return 'Names are 1 to 32 letters or digits (any language), plus . _ or -, starting with a letter or digit.';
    case 'BAD_PASSWORD': return 'Passwords need at least 8 characters.';
    case 'RATE_LIMITED': return 'Too many attempts. Wait a minute, then try again.';
    case 'NETWORK': return 'Cannot reach the server. Check your connection and try again.';
    case 'SHUTTING_DOWN': return 'The server is restarting. Try again in a moment.';
    case 'FORBIDDEN_ORIGIN': return 'This server does not accept sign-ins from this address.';
    default: return capitalise(serverMessage);
  }
}

/** Why a text message was refused for good. */
export function sendErrorText(code: ErrorCodeName, serverMessage: string, to: string): string {
  switch (code) {
    case 'UNKNOWN_CONTACT': return `No one is called ${to} here.`;
    case 'QUEUE_FULL': return `${to} has too many messages waiting. Try again later.`;
    case 'TEXT_EMPTY': return 'The message is empty.';
    case 'TEXT_TOO_LONG': return 'The message is too long.';
    default: return capitalise(serverMessage);
  }
}

/** Why a video stream stopped, told from the side of `me` (sender or recipient). */
export function streamEndText(reason: AbortReasonName | ErrorCodeName | 'DISCONNECTED', peer: string, side: 'sender' | 'recipient', serverMessage: string): string {
  switch (reason) {
    case 'DECLINED': return side === 'sender' ? `${peer} declined the video.` : 'You declined the video.';
    case 'SENDER_CANCELLED': return side === 'sender' ? 'You cancelled the video.' : `${peer} cancelled the video.`;
    case 'RECIPIENT_CANCELLED': return side === 'sender' ? `${peer} stopped the video.` : 'You stopped the video.';
    case 'SENDER_DISCONNECTED': return `${peer} went offline, so the video stopped.`;
    case 'RECIPIENT_DISCONNECTED': return `${peer} went offline, so the video stopped.`;
    case 'RECIPIENT_OFFLINE': return `${peer} is offline. Videos go only to contacts who are online.`;
    case 'TAKEOVER': return `The video stopped: you or ${peer} signed in somewhere else.`;
    case 'SERVER_SHUTDOWN': return 'The server restarted, so the video stopped. Send it again.';
    case 'DISCONNECTED': return 'The connection dropped, so the video stopped. Send it again.';
    case 'STREAM_LIMIT': return 'Too many videos are on the way at once. Wait for one to finish.';
    case 'FILE_TOO_LARGE': return 'The file is larger than this server accepts.';
    case 'STREAM_SELF': return 'You cannot send a video to yourself.';
    case 'UNKNOWN_CONTACT': return `No one is called ${peer} here.`;
    case 'PROTOCOL': return `The video stopped: ${serverMessage}.`;
    default: return `The video stopped: ${serverMessage}`;
  }
}

function capitalise(s: string): string {
  const t = s.trim();
  if (!t) return 'Something went wrong.';
  const first = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(Math.round(bytesPerSec))}/s`;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '';
  const s = Math.ceil(sec);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "14:03" today, "Mon 14:03" this week, "3 Mar 14:03" before. */
export function formatTime(ts: number, now = Date.now()): string {
  const d = new Date(ts);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const today = new Date(now);
  if (d.toDateString() === today.toDateString()) return time;
  if (now - ts < 6 * 86_400_000) return `${d.toLocaleDateString([], { weekday: 'short' })} ${time}`;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

/** "MP4 video", "WebM video", ... from an offer's container and MIME type. */
export function describeType(container: string, mime: string): string {
  const base = mime.split(';')[0]!.trim();
  switch (container) {
    case 'fmp4':
    case 'mp4': return base.startsWith('audio/') ? 'MP4 audio' : 'MP4 video';
    case 'webm': return base.startsWith('audio/') ? 'WebM audio' : 'WebM video';
    default: return base || 'file';
  }
}
