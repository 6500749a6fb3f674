// audit verify FILE [...] [--head SEQ:HASH]: checks the hash chain (across rotated files); exit 1 with the first bad
// record. With --head, also that the chain still holds a head noted earlier: nothing cut from its end, not rewritten.
import path from 'node:path';
import { verifyAuditFiles, type ChainAnchor } from '../audit/index.js';
import { parseCommandArgs } from './args.js';
import { UsageError } from './errors.js';

export async function auditCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { head: { type: 'string' } }, true);
  const [sub, ...files] = positionals;
  if (sub !== 'verify') throw new UsageError(`unknown audit subcommand "${sub ?? ''}": use "audit verify FILE"`);
  if (files.length === 0) throw new UsageError('audit verify needs the audit log FILE');
  const anchor = values.head !== undefined ? parseAnchor(values.head) : undefined;
  const verdict = await verifyAuditFiles(files.map((f) => path.resolve(f)), { anchor });
  if (verdict.ok) {
    const range = verdict.firstSeq !== undefined ? ` (seq ${verdict.firstSeq}–${verdict.lastSeq})` : '';
    const anchored = anchor ? `; seq ${anchor.seq} still has the hash noted for it` : '';
    const startMissing = verdict.firstSeq !== undefined && verdict.firstSeq > 1;
    if (startMissing && !anchor) warnStartMissing(verdict.firstSeq!);
    const intact = startMissing ? `hash chain intact FROM SEQ ${verdict.firstSeq} ONLY` : 'hash chain intact';
    process.stdout.write(`ok: ${verdict.records} record(s) in ${verdict.files} file(s)${range}, ${intact}${anchored}\n`);
    if (verdict.lastSeq !== undefined) {
      process.stdout.write(`head: ${headText(verdict.lastSeq, verdict.lastHash!)} (keep it elsewhere; --head ${headText(verdict.lastSeq, verdict.lastHash!)} later proves nothing was cut from the end or rewritten)\n`);
    }
    return 0;
  }
  process.stdout.write(`TAMPERED: ${verdict.file}${verdict.line > 0 ? ` line ${verdict.line}` : ''}${verdict.seq !== undefined ? ` (seq ${verdict.seq})` : ''}: ${verdict.reason}\n`);
  return 1;
}

/**
 * The chain proves nothing about records before the oldest one kept: rotation dropped them, or they were flooded out
 * or deleted. Without a head noted earlier, "intact" would be read as "complete", so this is said first and loudly.
 */
function warnStartMissing(firstSeq: number): void {
  const warning =
    `WARNING: THE START OF HISTORY IS MISSING: the oldest record kept is seq ${firstSeq}, not 1 (its "prev" is not the genesis hash); ` +
    `records 1–${firstSeq - 1} were rotated away or removed. The chain below is intact only from seq ${firstSeq}, and nothing here shows ` +
    `whether records were pushed out on purpose or the files rewritten. Check against a head noted earlier: audit verify FILE --head SEQ:HASH.\n`;
  process.stdout.write(warning);
  process.stderr.write(warning);
}

/** How a chain head is written down: `SEQ:HASH`, what --head takes. */
export function headText(seq: number, hash: string): string {
  return `${seq}:${hash}`;
}

function parseAnchor(text: string): ChainAnchor {
  const match = /^([1-9][0-9]{0,15}):([0-9a-f]{64})$/.exec(text.trim());
  if (!match) throw new UsageError(`--head expects SEQ:HASH as "audit verify" printed it (e.g. 37:9f2c…, 64 hex digits), got "${text}"`);
  return { seq: Number(match[1]), hash: match[2]! };
}
