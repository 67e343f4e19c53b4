/** A small typed event emitter that works the same in Node and the browser. */
export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners = new Map<keyof Events, Set<(e: never) => void>>();

  on<K extends keyof Events>(type: K, fn: (e: Events[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn as (e: never) => void);
    return () => set.delete(fn as (e: never) => void);
  }

  /** Resolves with the next event of `type` for which `match` holds. */
  once<K extends keyof Events>(type: K, match: (e: Events[K]) => boolean = () => true): Promise<Events[K]> {
    return new Promise((resolve) => {
      const off = this.on(type, (e) => {
        if (!match(e)) return;
        off();
        resolve(e);
      });
    });
  }

  protected emit<K extends keyof Events>(type: K, e: Events[K]): void {
    for (const fn of [...(this.listeners.get(type) ?? [])]) {
      try {
        (fn as (e: Events[K]) => void)(e);
      } catch (err) {
        // A listener's bug must not break the connection's state machine; surface it asynchronously.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
