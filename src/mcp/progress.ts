// Streams command output to the client as progress notifications, coalesced so a device that floods output
// costs a bounded number of bounded messages instead of one notification per SSH packet.
import type { ServerContext } from '@modelcontextprotocol/server';

const FLUSH_INTERVAL_MS = 200;
const MAX_MESSAGE_BYTES = 16 * 1024;

export class OutputStreamer {
  private pending: { stream: 'stdout' | 'stderr'; chunk: Buffer }[] = [];
  private pendingBytes = 0;
  private skipped = 0;
  private total = 0;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly ctx: ServerContext,
    private readonly token: string | number,
  ) {}

  /** A streamer when the client asked for progress (sent a progressToken), else undefined. */
  static forRequest(ctx: ServerContext): OutputStreamer | undefined {
    const token = ctx.mcpReq._meta?.progressToken;
    return token === undefined ? undefined : new OutputStreamer(ctx, token as string | number);
  }

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.total += chunk.length;
    const room = MAX_MESSAGE_BYTES - this.pendingBytes;
    if (room <= 0) {
      this.skipped += chunk.length;
    } else {
      const kept = chunk.subarray(0, room);
      this.pending.push({ stream, chunk: Buffer.from(kept) });
      this.pendingBytes += kept.length;
      this.skipped += chunk.length - kept.length;
    }
    this.timer ??= setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0 && this.skipped === 0) return;
    const parts = this.pending.map((p) => `[${p.stream}] ${p.chunk.toString('utf8')}`);
    if (this.skipped > 0) parts.push(`[... ${this.skipped} bytes not streamed; the result has head and tail ...]`);
    this.pending = [];
    this.pendingBytes = 0;
    this.skipped = 0;
    void this.ctx.mcpReq
      .notify({ method: 'notifications/progress', params: { progressToken: this.token, progress: this.total, message: parts.join('') } })
      .catch(() => undefined); // A client that went away must not fail the command.
  }
}
