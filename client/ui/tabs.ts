/**
 * One live tab per account in this browser. Tabs share the session cookie, so a second tab's socket replaces
 * the first one's on the server (close code REPLACED), after which the SDK stops (reason `replaced`). So that
 * the older tab says why instead of just going quiet, a tab that starts announces itself on a
 * BroadcastChannel and the other tabs of the same account step back and offer "Use here".
 */
export class TabClaim {
  private readonly channel: BroadcastChannel | undefined;
  private readonly id = crypto.randomUUID();

  constructor(meKey: string, onSuperseded: () => void) {
    if (typeof BroadcastChannel === 'undefined') return;
    this.channel = new BroadcastChannel(`parley-tab:${meKey}`);
    this.channel.onmessage = (ev: MessageEvent<unknown>) => {
      const msg = ev.data as { live?: unknown };
      if (typeof msg?.live === 'string' && msg.live !== this.id) onSuperseded();
    };
  }

  /** Tells the other tabs of this account that this one is now the live one. */
  claim(): void {
    this.channel?.postMessage({ live: this.id });
  }

  close(): void {
    this.channel?.close();
  }
}
