/** The Parley client SDK: connection, messages, presence, file streams, rooms, and the HTTP sign-in calls. */
export { ParleyClient, type ClientOptions, type ClientEvents, type ConnState, type ClosedReason, type IncomingMessage, type OutgoingMessage, type RoomSink, type WebSocketLike } from './client.ts';
export { Streams, OutgoingStream, IncomingStream, StreamError, type FileMeta, type FileSource, type Piece, type KeptTransfer, type Pause, type Progress, type RangedSource } from './streams.ts';
export { register, signIn, signOut, sessionValid, findContact, changePassword, deleteAccount, ParleyHttpError, type HttpOptions } from './http.ts';
export { Rooms, RoomError, roomKey, type Room, type RoomMember, type RoomMessage, type RoomsEvents, type RoomsOptions, type WhoHasIt } from './rooms.ts';
