// list_connections: every configured device with its live state, so the agent knows what it can reach.
import { z } from 'zod';
import type { McpServer } from '@modelcontextprotocol/server';
import type { ToolContext } from '../context.js';
import { toolResult } from '../result.js';

const tunnelSchema = z.object({
  up: z.boolean(),
  since: z.string().optional(),
  peer: z.string().optional(),
  last_down: z.string().optional(),
  last_down_reason: z.string().optional(),
  setup_hint: z.string().optional(),
});

export const connectionViewSchema = z.object({
  name: z.string(),
  mode: z.enum(['direct', 'tunnel']),
  user: z.string(),
  host: z.string(),
  port: z.number(),
  tags: z.array(z.string()),
  state: z.enum(['idle', 'connecting', 'connected', 'tunnel_down', 'failing', 'circuit_open']),
  tunnel: tunnelSchema.nullable(),
  failures: z.number(),
  last_error: z.string().nullable(),
  last_error_at: z.string().nullable(),
  last_used: z.string().nullable(),
  connected_since: z.string().nullable(),
  circuit_retry_at: z.string().nullable(),
  active_commands: z.number(),
  queued_commands: z.number(),
  policy: z.enum(['none', 'custom']),
  actions: z.array(z.string()),
});

const outputSchema = z.object({ connections: z.array(connectionViewSchema) });

export function registerListConnections(server: McpServer, { gateway, audited }: ToolContext): void {
  server.registerTool(
    'list_connections',
    {
      title: 'List SSH connections',
      description:
        'Lists the devices this gateway can reach, with live state (idle, connected, tunnel_down, failing, circuit_open), tunnel status, failures, last error and last use. Call it first to learn connection names.',
      inputSchema: z.object({ tag: z.string().optional().describe('Only connections carrying this tag.') }).strict(),
      outputSchema,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    audited('list_connections', async ({ tag }) => {
      const connections = gateway.listConnections(tag);
      const lines = connections.map(
        (c) => `${c.name} (${c.mode}, ${c.user}@${c.host}:${c.port}) ${c.state}${c.last_error ? ` — last error: ${c.last_error}` : ''}`,
      );
      const text = connections.length === 0 ? `no connections${tag ? ` tagged "${tag}"` : ''}` : lines.join('\n');
      return toolResult({ connections }, text);
    }),
  );
}
