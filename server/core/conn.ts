/**
 * What the core needs of a connection. The uWS adapter implements it, as the subclass of `Session` it makes
 * for each socket (one object per connection rather than a session holding a separate connection object:
 * tens of thousands of them sit idle). The core never sees a uWS object.
 */
export interface Conn {
  /** Process-unique connection id, for logs. */
  readonly id: number;
  /**
   * Sends one binary frame. The transport may hold it until the end of the event-loop turn to write a turn's
   * frames together; order is kept. Never drops silently: a socket over its backpressure limit is closed by
   * the transport, and the close path requeues whatever was in flight to it.
   */
  write(bytes: Uint8Array): void;
  /**
   * Sends bytes that are only valid during this call (a relayed chunk, still in uWS's receive buffer) now,
   * after anything `write` queued before, so order is kept.
   */
  forward(bytes: Uint8Array): void;
  /** Bytes written and not yet taken by the peer (the socket's send buffer). */
  buffered(): number;
  /** Closes with a code and a short reason. Idempotent; later writes are ignored. */
  end(code: number, reason: string): void;
}
