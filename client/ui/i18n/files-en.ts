/**
 * The English words of file transfer, the reference for every other language's (i18n/files-zh-CN.ts): same keys,
 * same shapes. Kept apart from en.ts because its entries are grouped objects (by kind of file), not single strings.
 */
export type FileKindWord = 'photo' | 'video' | 'audio' | 'file';

export const files = {
  noun: { photo: 'photo', video: 'video', audio: 'audio file', file: 'file' } as Record<FileKindWord, string>,
  offered: (peer: string, noun: string) => `${peer} wants to send you a ${noun}.`,
  accept: { photo: 'Receive', video: 'Watch', audio: 'Listen', file: 'Receive' } as Record<FileKindWord, string>,
  decline: 'Decline',
  stop: 'Stop',
  cancel: 'Cancel',
  save: 'Save',
  sendButton: 'Send a file',
  sendDisabledOffline: 'Files go only to contacts who are online',
  notConnected: 'Not connected',
  dropHere: 'Drop a file to send it',
  preparing: 'Looking at the file…',
  waiting: (peer: string) => `Waiting for ${peer} to accept…`,
  sending: (peer: string) => `Sending to ${peer}…`,
  receiving: (peer: string) => `Receiving from ${peer}…`,
  pausedWaitingFor: (peer: string) => `Paused, waiting for ${peer} to come back…`,
  pausedOffline: 'Paused, waiting for the connection to come back…',
  senderKeepOpen: 'Keep this page open: if it is reloaded, the file has to be picked again.',
  senderKept: 'A copy of the file is kept in this browser until it has arrived, so a reload does not stop it.',
  unreadable: (peer: string) => `This file can no longer be read here, so it cannot go on. Give up, then send it to ${peer} again.`,
  unreadableStopped: (peer: string) => `The file could no longer be read here, so it was stopped. Send it to ${peer} again.`,
  goesOnElsewhere: 'This file goes on in your other Parley tab.',
  giveUp: 'Give up',
  cannotResume: (peer: string) => `This transfer can no longer go on. Ask ${peer} to send it again.`,
  sent: (peer: string, noun: string) => `Sent. ${peer} has the whole ${noun}.`,
  arrived: (noun: string) => `The whole ${noun} has arrived.`,
  arrivedSaveToOpen: 'The whole file has arrived. Save it to open it in another app.',
  youDeclined: (noun: string) => `You declined the ${noun}.`,
  tooLargeForServer: (size: string, max: string) => `This file is ${size}; the server takes files up to ${max}.`,
  pictureCannotShow: (codec: string) =>
    `The picture of this video can't be shown in this browser (it is ${codec}). Save it and open it in another player.`,
  cannotPlayHere: (noun: string) => `This browser can't play this ${noun}. Save it and open it in another app.`,
  playsWhenComplete: (noun: string) => `This ${noun} will play once it has fully arrived.`,
  peerPlaysWhenComplete: (peer: string) => `${peer} can play this once it has fully arrived.`,
  pressPlay: 'Press play to start.',
  playbackProblem: 'Playback stopped working here. Save the file and open it in another player.',
  notSaved: 'The file could not be kept, so it cannot be saved.',
  storeFailed: 'The file could not be stored in this browser, so it was stopped.',
  couldNotSend: 'The file could not be read, so it was not sent.',
  photoAlt: (name: string) => `Photo ${name}`,
  openFull: 'Click to see it full size; click again to close.',
  kindLabel: { photo: 'Photo', video: 'Video', audio: 'Audio', file: 'File' } as Record<FileKindWord, string>,
};

export type FilesWords = typeof files;
