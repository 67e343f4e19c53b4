/** Everything the server and the client share: protocol data, codes, the codec, names and ids. */
export * from './protocol.ts';
export * from './codes.ts';
export * from './codec.ts';
export * from './chunk.ts';
export * from './names.ts';
export { newMessageId } from './ids.ts';
