/** What a person would call a file, from its MIME type: the word both sides use (photo, video, audio, file). */
export type FileKind = 'photo' | 'video' | 'audio' | 'file';

export function kindOf(mime: string): FileKind {
  const base = mime.split(';')[0]!.trim().toLowerCase();
  if (base.startsWith('image/')) return 'photo';
  if (base.startsWith('video/')) return 'video';
  if (base.startsWith('audio/')) return 'audio';
  return 'file';
}
