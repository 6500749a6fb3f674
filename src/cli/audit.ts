// audit verify FILE [...]: checks the hash chain (across rotated files); exit 1 with the first bad record.
import path from 'node:path';
import { verifyAuditFiles } from '../audit/index.js';
import { UsageError } from './errors.js';

export async function auditCommand(args: string[]): Promise<number> {
  const [sub, ...files] = args;
  if (sub !== 'verify') throw new UsageError(`unknown audit subcommand "${sub ?? ''}": use "audit verify FILE"`);
  if (files.length === 0) throw new UsageError('audit verify needs the audit log FILE');
  const verdict = await verifyAuditFiles(files.map((f) => path.resolve(f)));
  if (verdict.ok) {
    const range = verdict.firstSeq !== undefined ? ` (seq ${verdict.firstSeq}–${verdict.lastSeq})` : '';
    process.stdout.write(`ok: ${verdict.records} record(s) in ${verdict.files} file(s)${range}, hash chain intact\n`);
    return 0;
  }
  process.stdout.write(`TAMPERED: ${verdict.file} line ${verdict.line}${verdict.seq !== undefined ? ` (seq ${verdict.seq})` : ''}: ${verdict.reason}\n`);
  return 1;
}
