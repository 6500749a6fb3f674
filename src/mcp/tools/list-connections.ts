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

const STATES = connectionViewSchema.shape.state.options;
/** Enough for any small fleet in one call; a fleet of thousands is paged rather than poured into the context. */
const DEFAULT_LIMIT = 200;
const MAX_LIMIT = 5000;

const outputSchema = z.object({
  connections: z.array(connectionViewSchema),
  total: z.number().describe('Connections matching the tag and state filters, on every page.'),
  counts: z.record(z.string(), z.number()).describe('Matching connections (tag filter only) per state.'),
  next_offset: z.number().nullable().describe('Pass as offset for the next page; null on the last page.'),
});

const inputSchema = z
  .object({
    tag: z.string().optional().describe('Only connections carrying this tag.'),
    state: z.enum(STATES).optional().describe('Only connections in this state, e.g. "failing" or "tunnel_down".'),
    limit: z.number().int().min(1).max(MAX_LIMIT).optional().describe(`At most this many connections (default ${DEFAULT_LIMIT}).`),
    offset: z.number().int().min(0).optional().describe('Skip this many matching connections (paging).'),
  })
  .strict();

export function registerListConnections(server: McpServer, { gateway, audited }: ToolContext): void {
  server.registerTool(
    'list_connections',
    {
      title: 'List SSH connections',
      description:
        'Lists the devices this gateway can reach, with live state (idle, connected, tunnel_down, failing, circuit_open), tunnel status, failures, last error and last use. Call it first to learn connection names. ' +
        `Large fleets come in pages of ${DEFAULT_LIMIT} with counts per state; filter by tag or state to find what matters.`,
      inputSchema,
      outputSchema,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    audited('list_connections', async ({ tag, state, limit = DEFAULT_LIMIT, offset = 0 }) => {
      const tagged = gateway.listConnections(tag);
      const counts: Record<string, number> = {};
      for (const c of tagged) counts[c.state] = (counts[c.state] ?? 0) + 1;
      const matching = state ? tagged.filter((c) => c.state === state) : tagged;
      const connections = matching.slice(offset, offset + limit);
      const end = offset + connections.length;
      const next_offset = end < matching.length ? end : null;
      return toolResult({ connections, total: matching.length, counts, next_offset }, listText(connections, { tag, state, offset, total: matching.length, counts, next_offset }));
    }),
  );
}

function listText(
  connections: z.infer<typeof connectionViewSchema>[],
  page: { tag?: string; state?: string; offset: number; total: number; counts: Record<string, number>; next_offset: number | null },
): string {
  const filter = [page.tag ? `tagged "${page.tag}"` : '', page.state ? `in state ${page.state}` : ''].filter(Boolean).join(' ');
  if (page.total === 0) return `no connections${filter ? ` ${filter}` : ''}`;
  const lines = connections.map(
    (c) => `${c.name} (${c.mode}, ${c.user}@${c.host}:${c.port}) ${c.state}${c.last_error ? ` — last error: ${c.last_error}` : ''}`,
  );
  const paged = page.offset > 0 || page.next_offset !== null;
  if (!paged) return lines.join('\n');
  const byState = Object.entries(page.counts).map(([s, n]) => `${n} ${s}`).join(', ');
  const shown = `${page.offset + 1}-${page.offset + connections.length} of ${page.total}${filter ? ` ${filter}` : ''}`;
  const next = page.next_offset !== null ? `; next page: offset=${page.next_offset}` : '';
  return [`connections ${shown} (${byState})${next}`, ...lines].join('\n');
}
