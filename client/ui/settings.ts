/**
 * This browser's preferences, kept in localStorage: whether to send read receipts and typing indicators
 * (both on by default, as in Signal and WhatsApp), whether to show notifications (on by default: the browser's
 * own permission, asked only when the person turns them on, is what really lets them through) and whether to
 * play a sound (off by default). Read once at start, written when changed in the panel.
 */
export interface Settings {
  readReceipts: boolean;
  typing: boolean;
  notify: boolean;
  sound: boolean;
}

const KEY = 'parley:settings';
const DEFAULTS: Settings = { readReceipts: true, typing: true, notify: true, sound: false };

export function loadSettings(): Settings {
  try {
    const raw = JSON.parse(localStorage.getItem(KEY) ?? '{}') as Partial<Record<keyof Settings, unknown>>;
    const pick = (k: keyof Settings): boolean => (typeof raw[k] === 'boolean' ? raw[k] : DEFAULTS[k]);
    return { readReceipts: pick('readReceipts'), typing: pick('typing'), notify: pick('notify'), sound: pick('sound') };
  } catch {
    return { ...DEFAULTS };
  }
}

export function saveSettings(s: Settings): void {
  try {
    localStorage.setItem(KEY, JSON.stringify(s));
  } catch {
    // not remembered after a reload; this page still follows it
  }
}
