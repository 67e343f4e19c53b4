/**
 * Notifications for what arrives while its conversation is not in view (the page hidden, or another
 * conversation open): a browser notification when the browser allows it and the person left them on, and an
 * optional short tone. Clicking one focuses the page and opens the conversation. A muted contact makes neither.
 * The browser's permission is asked only when the person says so (the offer shown after the first message that
 * arrived out of view, or the switch in the settings panel), never at load.
 */
import type { Chat } from './chat.ts';

const OFFER_KEY = 'parley:notify-offer';

function mutedKey(meKey: string): string {
  return `parley:muted:${meKey}`;
}

/** Contacts (by key) whose messages make no notification and no sound, for this account in this browser. */
export function mutedContacts(meKey: string): Set<string> {
  try {
    const raw = JSON.parse(localStorage.getItem(mutedKey(meKey)) ?? '[]') as unknown;
    return new Set(Array.isArray(raw) ? raw.filter((k): k is string => typeof k === 'string') : []);
  } catch {
    return new Set();
  }
}

export function setMuted(meKey: string, key: string, muted: boolean): void {
  const set = mutedContacts(meKey);
  if (muted) set.add(key);
  else set.delete(key);
  try {
    localStorage.setItem(mutedKey(meKey), JSON.stringify([...set]));
  } catch {
    // not remembered after a reload; this page still follows it
  }
}

/** 'unsupported' when this browser has no notifications (or not in this context, e.g. plain http). */
export function permission(): NotificationPermission | 'unsupported' {
  return typeof Notification === 'function' ? Notification.permission : 'unsupported';
}

/** Asks the browser; true when notifications are allowed afterwards. */
export async function askPermission(): Promise<boolean> {
  if (permission() === 'unsupported') return false;
  if (Notification.permission === 'default') await Notification.requestPermission().catch(() => 'denied');
  return Notification.permission === 'granted';
}

/** Whether to show the "Turn on notifications" offer: never asked, and not put off with "Not now". */
export function offerWanted(): boolean {
  if (permission() !== 'default') return false;
  try {
    return localStorage.getItem(OFFER_KEY) !== 'dismissed';
  } catch {
    return true;
  }
}

export function dismissOffer(): void {
  try {
    localStorage.setItem(OFFER_KEY, 'dismissed');
  } catch {
    // shown again after a reload
  }
}

let audio: AudioContext | undefined;

/** A short two-note tone, made with Web Audio (no file to fetch). Silently nothing when audio is blocked. */
function tone(): void {
  try {
    audio ??= new AudioContext();
    const now = audio.currentTime;
    const gain = audio.createGain();
    gain.connect(audio.destination);
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.15, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.35);
    for (const [freq, at] of [[880, 0], [1320, 0.12]] as const) {
      const osc = audio.createOscillator();
      osc.frequency.value = freq;
      osc.connect(gain);
      osc.start(now + at);
      osc.stop(now + at + 0.2);
    }
  } catch {
    // no sound in this browser
  }
}

/**
 * Something from `peer` (a contact key) arrived while its conversation was not in view: `shown` when a browser
 * notification was shown, `offer` when the page should offer to turn them on, `none` otherwise.
 */
export function announce(chat: Chat, peer: string, title: string, body: string): 'shown' | 'offer' | 'none' {
  if (mutedContacts(chat.meKey).has(peer)) return 'none';
  if (chat.settings.sound) tone();
  if (!chat.settings.notify) return 'none';
  if (permission() !== 'granted') return offerWanted() ? 'offer' : 'none';
  let n: Notification;
  try {
    n = new Notification(title, { body, tag: `parley:${peer}`, lang: document.documentElement.lang });
  } catch {
    return 'none'; // e.g. Android Chrome allows them only from a service worker
  }
  n.addEventListener('click', () => {
    window.focus();
    chat.open(peer);
    n.close();
  });
  return 'shown';
}
