/**
 * Can this browser show this file? Decided from the exact codec string, never from the container alone
 * (`canPlayType('video/mp4')` says "maybe" to an HEVC file it then plays as sound over a black box):
 * MediaSource.isTypeSupported on the full type, and for each video codec VideoDecoder.isConfigSupported
 * where WebCodecs exists.
 */
export type Playability =
  | { ok: true }
  /** The sound plays but the picture cannot be decoded here. */
  | { ok: false; why: 'picture'; codec: string }
  /** Nothing in it can be played here. */
  | { ok: false; why: 'all' };

const VIDEO_CODEC = /^(avc[13]|hvc1|hev1|vp0?[89]|vp09|av01|dvh[1e]|mp4v)/i;

export function codecsOf(mime: string): string[] {
  const m = /codecs\s*=\s*"?([^";]+)"?/i.exec(mime);
  return m ? m[1]!.split(',').map((c) => c.trim()).filter(Boolean) : [];
}

/** A short human name for a codec string, for sentences. */
export function codecName(codec: string): string {
  if (/^(hvc1|hev1)/i.test(codec)) return 'H.265 (HEVC)';
  if (/^avc/i.test(codec)) return 'H.264';
  if (/^av01/i.test(codec)) return 'AV1';
  if (/^vp0?9/i.test(codec)) return 'VP9';
  if (/^vp0?8/i.test(codec)) return 'VP8';
  if (/^dv/i.test(codec)) return 'Dolby Vision';
  return codec;
}

/** WebM names VP8 and VP9 briefly; WebCodecs wants VP9 in full (profile 0, level 1, 8 bits). */
function webCodecsName(codec: string): string {
  if (/^vp0?9$/i.test(codec)) return 'vp09.00.10.08';
  if (/^vp0?8$/i.test(codec)) return 'vp8';
  return codec;
}

async function videoDecodes(codec: string): Promise<boolean> {
  if (typeof VideoDecoder === 'undefined') return true; // no WebCodecs: MediaSource's answer stands
  codec = webCodecsName(codec);
  try {
    const { supported } = await VideoDecoder.isConfigSupported({ codec, codedWidth: 640, codedHeight: 360 });
    return supported === true;
  } catch {
    return false; // a codec string WebCodecs cannot even parse
  }
}

/**
 * Whether `mime` (with codecs) can be played, and if not, whether only the picture is the problem.
 * `media` answers canPlayType for types MediaSource does not take (whole-file playback).
 */
export async function playability(mime: string, media: HTMLMediaElement): Promise<Playability> {
  const base = mime.split(';')[0]!.trim();
  const codecs = codecsOf(mime);
  const video = codecs.filter((c) => VIDEO_CODEC.test(c));
  for (const c of video) {
    if (!(await videoDecodes(c))) {
      const audio = codecs.filter((a) => !VIDEO_CODEC.test(a));
      const audioPlays = audio.length > 0 && audio.every((a) =>
        (typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(`audio/mp4; codecs="${a}"`))
        || media.canPlayType(`audio/mp4; codecs="${a}"`) !== '');
      return audioPlays ? { ok: false, why: 'picture', codec: c } : { ok: false, why: 'all' };
    }
  }
  const whole = codecs.length > 0 ? media.canPlayType(mime) !== '' : media.canPlayType(base) !== '';
  const streamed = typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(mime);
  if (whole || streamed) return { ok: true };
  if (video.length > 0 && codecs.length > video.length) return { ok: false, why: 'picture', codec: video[0]! };
  return { ok: false, why: 'all' };
}
