import { nanoid } from 'nanoid';

/** A message id as the protocol expects: nanoid's 21 URL-safe characters (~126 bits). */
export function newMessageId(): string {
  return nanoid();
}
