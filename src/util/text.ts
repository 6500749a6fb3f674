// Text that a device or an edge chose (disconnect descriptions, channel-open and SFTP failure messages) reaches
// logs, the audit record and the agent's context. Made printable and capped first, it can't forge log lines,
// smuggle terminal escapes, or pour a novel of instructions into the agent's context.

/** `text` with control characters escaped (`\x1b`) and at most `max` characters (then `…`). */
export function printable(text: string, max = 64): string {
  // eslint-disable-next-line no-control-regex
  const visible = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return visible.length > max ? `${visible.slice(0, max)}…` : visible;
}

/** How much of a device's own error text is shown. */
export const DEVICE_TEXT_MAX = 300;

/** A device-originated error message, made safe to show. */
export function deviceText(err: unknown): string {
  return printable(err instanceof Error ? err.message : String(err), DEVICE_TEXT_MAX);
}
