// get_history: what was done recently (from the audit log), so an agent or its human can review it.
import { z } from 'zod';
import type { McpServer } from '@modelcontextprotocol/server';
import type { ToolContext } from '../context.js';
import { toolResult } from '../result.js';
import { readAuditRecords } from '../../audit/index.js';
import { printable } from '../../util/text.js';

const entrySchema = z.object({
  seq: z.number(),
  ts: z.string(),
  event: z.string(),
  connection: z.string().optional(),
  tool: z.string().optional(),
  command: z.string().optional(),
  action: z.string().optional(),
  exit_code: z.number().nullable().optional(),
  signal: z.string().nullable().optional(),
  duration_ms: z.number().optional(),
  timed_out: z.boolean().optional(),
  reason: z.string().optional(),
  error: z.string().optional(),
  client: z.unknown().optional(),
});

const HISTORY_EVENTS = ['tool_call', 'command_start', 'command_end', 'policy_denial', 'approval_asked', 'approval_granted', 'approval_refused', 'file_transfer'];

/**
 * One line of the text content. Commands, connection and event names were chosen by the agent or a device (a
 * here-doc body holds newlines): escaped, so no record can print a line that looks like another record.
 */
function historyLine(e: z.infer<typeof entrySchema>): string {
  const shown = (text: string): string => printable(text, Number.POSITIVE_INFINITY);
  const connection = e.connection ? ` ${shown(e.connection)}` : '';
  const command = e.command ? `: ${shown(e.command)}` : '';
  const exit = e.exit_code !== undefined ? ` → exit ${e.exit_code}` : '';
  return `${shown(e.ts)} #${e.seq} ${shown(e.event)}${connection}${command}${exit}`;
}

export function registerGetHistory(server: McpServer, { gateway, audited }: ToolContext): void {
  server.registerTool(
    'get_history',
    {
      title: 'Recent activity from the audit log',
      description: 'Returns recent audited events (commands with exit codes, refusals, approvals, tool calls), optionally for one connection. Read-only.',
      inputSchema: z
        .object({
          connection: z.string().optional().describe('Only events for this connection.'),
          limit: z.number().int().min(1).max(500).optional().describe('Most recent N events (default 50).'),
        })
        .strict(),
      outputSchema: z.object({ entries: z.array(entrySchema) }),
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    audited('get_history', async ({ connection, limit }) => {
      if (connection !== undefined) gateway.connection(connection); // unknown names get the usual helpful error
      const records = await readAuditRecords(gateway.config.gateway.audit_log, { connection, events: HISTORY_EVENTS, limit: limit ?? 50 });
      const entries = records.map((r) => {
        const pick = entrySchema.safeParse(r);
        return pick.success ? pick.data : { seq: r.seq, ts: r.ts, event: r.event };
      });
      const text = entries.map(historyLine).join('\n');
      return toolResult({ entries }, text || 'no matching history');
    }),
  );
}
