// One compact line per audit record: seq, event, connection, then what happened (command and exit, rule, peer...).
import type { AuditRecord } from '../audit/index.js';

function detail(r: AuditRecord): string {
  const f = r as Record<string, unknown>;
  const str = (key: string): string | undefined => (typeof f[key] === 'string' ? (f[key] as string) : undefined);
  const parts: string[] = [];
  if (str('tool')) parts.push(str('tool')!);
  if (str('action')) parts.push(`action ${str('action')}`);
  if (str('command')) parts.push(JSON.stringify(str('command')).slice(1, -1));
  if (r.event === 'command_end') {
    if (str('error')) parts.push(`→ error: ${str('error')}`);
    else parts.push(`→ exit ${f.exit_code ?? f.signal}${typeof f.duration_ms === 'number' ? ` (${f.duration_ms} ms)` : ''}`);
  }
  if (str('rule')) parts.push(`rule ${str('rule')}`);
  if (r.event === 'tunnel_up' || r.event === 'forward_accepted') parts.push(`port ${f.port}`);
  if (str('peer') && r.event.startsWith('tunnel')) parts.push(`from ${str('peer')}`);
  if (r.event === 'config_loaded') parts.push(`sha256 ${String(f.sha256).slice(0, 12)}…, ${f.connections} connection(s)`);
  if (r.event === 'gateway_start') parts.push(`v${f.version} pid ${f.pid}`);
  if ((r.event === 'gateway_stop' || r.event === 'tunnel_down' || r.event === 'ssh_fail') && str('reason')) parts.push(str('reason')!);
  return parts.join('  ');
}

export function auditLine(r: AuditRecord): string {
  const connection = typeof (r as Record<string, unknown>).connection === 'string' ? ((r as Record<string, unknown>).connection as string) : '';
  return `#${String(r.seq).padEnd(3)} ${r.event.padEnd(17)} ${connection.padEnd(10)} ${detail(r)}`.trimEnd();
}
