// Refusals come from whoever can reach a listener (the tunnel port, the HTTP endpoint), as fast as they can send them.
// Each is worth an audit record, but not without limit: an attacker must not be able to flood the log until
// rotation drops the records that matter (the agent's commands, the approvals). Beyond a small budget per window,
// refusals are counted and summarised once per window instead.

export interface NoiseSummary {
  /** How many records of each event were held back in the window. */
  counts: Record<string, number>;
  /** Up to MAX_PEERS addresses they came from. */
  peers: string[];
  window_s: number;
}

const MAX_PEERS = 10;

export class NoiseBudget {
  private used = 0;
  private counts = new Map<string, number>();
  private peers = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
    private readonly onSummary: (summary: NoiseSummary) => void,
  ) {}

  /** True when the event may be recorded as itself; false when it was counted for the window's summary. */
  admit(event: string, peer: string): boolean {
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.windowMs);
      this.timer.unref();
    }
    if (this.used < this.perWindow) {
      this.used++;
      return true;
    }
    this.counts.set(event, (this.counts.get(event) ?? 0) + 1);
    if (this.peers.size < MAX_PEERS) this.peers.add(addressOf(peer));
    return false;
  }

  /** Ends the window: reports what was held back (if anything) and starts counting afresh. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.used = 0;
    if (this.counts.size === 0) return;
    const summary = { counts: Object.fromEntries(this.counts), peers: [...this.peers], window_s: this.windowMs / 1000 };
    this.counts = new Map();
    this.peers = new Set();
    this.onSummary(summary);
  }
}

/** "1.2.3.4:5678" → "1.2.3.4", "[::1]:22" → "::1": the port changes with every connection and says nothing. */
export function addressOf(peer: string): string {
  const bracketed = /^\[(.*)\]:\d+$/.exec(peer);
  if (bracketed) return bracketed[1]!;
  const colon = peer.lastIndexOf(':');
  return colon > 0 ? peer.slice(0, colon) : peer;
}
