/** The Parley client SDK: connection, messages, presence, file streams, and the HTTP sign-in calls. */
export { ParleyClient, type ClientOptions, type ClientEvents, type ConnState, type ClosedReason, type IncomingMessage, type OutgoingMessage, type WebSocketLike } from './client.ts';
export { Streams, OutgoingStream, IncomingStream, StreamError, type FileMeta, type FileSource, type Progress } from './streams.ts';
export { register, signIn, signOut, sessionValid, ParleyHttpError, type HttpOptions } from './http.ts';
