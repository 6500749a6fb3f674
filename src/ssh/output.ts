// Bounded capture of a command's output: keeps the head and the tail, counts everything, never holds more
// than maxBytes however much the device prints, and never silently mangles bytes that are not UTF-8.

export type OutputEncoding = 'utf8' | 'base64';

export interface CapturedOutput {
  text: string;
  truncated: boolean;
  total_bytes: number;
  /** Bytes left out between head and tail. */
  omitted_bytes: number;
  encoding: OutputEncoding;
  /** utf8 only: the bytes were not valid UTF-8, and invalid sequences show as U+FFFD. Ask for base64 to get them exactly. */
  invalid_utf8: boolean;
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lenientDecoder = new TextDecoder('utf-8');

export class OutputCapture {
  private readonly headCap: number;
  private readonly tailCap: number;
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  total = 0;

  constructor(maxBytes: number) {
    this.headCap = Math.ceil(maxBytes / 2);
    this.tailCap = Math.floor(maxBytes / 2);
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let rest = chunk;
    if (this.headBytes < this.headCap) {
      const take = Math.min(this.headCap - this.headBytes, rest.length);
      // Copy, as for the tail: a view would keep the whole incoming chunk alive for the command's lifetime.
      this.head.push(Buffer.from(rest.subarray(0, take)));
      this.headBytes += take;
      rest = rest.subarray(take);
    }
    if (rest.length === 0 || this.tailCap === 0) return;
    // Copy: a subarray would pin the whole (possibly large) incoming chunk in memory.
    this.tail.push(Buffer.from(rest.subarray(Math.max(0, rest.length - this.tailCap))));
    this.tailBytes += Math.min(rest.length, this.tailCap);
    this.trimTail();
  }

  private trimTail(): void {
    while (this.tailBytes > this.tailCap) {
      const excess = this.tailBytes - this.tailCap;
      const first = this.tail[0];
      if (first.length <= excess) {
        this.tail.shift();
        this.tailBytes -= first.length;
      } else {
        this.tail[0] = Buffer.from(first.subarray(excess));
        this.tailBytes -= excess;
      }
    }
  }

  result(encoding: OutputEncoding = 'utf8'): CapturedOutput {
    const head = Buffer.concat(this.head);
    const tail = Buffer.concat(this.tail);
    const omitted = this.total - head.length - tail.length;
    const truncated = omitted > 0;
    if (encoding === 'base64') {
      return { text: Buffer.concat([head, tail]).toString('base64'), truncated, total_bytes: this.total, omitted_bytes: omitted, encoding, invalid_utf8: false };
    }
    if (!truncated) {
      const { text, valid } = decodeUtf8(Buffer.concat([head, tail]));
      return { text, truncated, total_bytes: this.total, omitted_bytes: 0, encoding, invalid_utf8: !valid };
    }
    // Cut at character boundaries so truncation itself never produces invalid UTF-8.
    const headEnd = utf8SafeEnd(head);
    const tailStart = utf8SafeStart(tail);
    const headPart = decodeUtf8(head.subarray(0, headEnd));
    const tailPart = decodeUtf8(tail.subarray(tailStart));
    const dropped = omitted + (head.length - headEnd) + tailStart;
    return {
      text: `${headPart.text}\n[... ${dropped} bytes omitted ...]\n${tailPart.text}`,
      truncated,
      total_bytes: this.total,
      omitted_bytes: dropped,
      encoding,
      invalid_utf8: !headPart.valid || !tailPart.valid,
    };
  }
}

/** UTF-8 text of `bytes`; `valid: false` when they are not UTF-8 (invalid sequences then show as U+FFFD). */
export function decodeUtf8(bytes: Buffer): { text: string; valid: boolean } {
  try {
    return { text: strictDecoder.decode(bytes), valid: true };
  } catch {
    return { text: lenientDecoder.decode(bytes), valid: false };
  }
}

/** Length of `buf` without a trailing incomplete UTF-8 sequence. */
export function utf8SafeEnd(buf: Buffer): number {
  let i = buf.length - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 3 && (buf[i] & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i < 0) return buf.length;
  const lead = buf[i];
  const needed = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
  return needed > continuation ? i : buf.length;
}

/** Offset of the first byte in `buf` that is not a UTF-8 continuation byte (at most 3 skipped). */
export function utf8SafeStart(buf: Buffer): number {
  let i = 0;
  while (i < buf.length && i < 3 && (buf[i] & 0xc0) === 0x80) i++;
  return i;
}
