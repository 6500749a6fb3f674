// run_on_many: one command across a set of devices (by name and/or tag), with bounded concurrency.
// Identical answers are grouped, so 200 devices saying the same thing cost one copy of the output.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { McpServer } from '@modelcontextprotocol/server';
import type { ToolContext } from '../context.js';
import { toolResult } from '../result.js';
import { runCommandOnDevice } from '../../gateway/commands.js';
import { commandOptionsShape, toCommandResult, type CommandResult } from './run-command.js';
import { GatewayError, errorMessage } from '../../errors.js';
import type { Gateway } from '../../gateway/gateway.js';

const groupSchema = z.object({
  id: z.number(),
  connections: z.array(z.string()),
  error: z
    .string()
    .optional()
    .describe('Set when the command could not run on these connections (gateway-level failure). Each device\'s own name, address and port read <connection>, <host>, <port>.'),
  exit_code: z.number().nullable().optional(),
  signal: z.string().nullable().optional(),
  timed_out: z.boolean().optional(),
  stdout: z.string().optional(),
  stderr: z.string().optional(),
  stdout_truncated: z.boolean().optional(),
  stderr_truncated: z.boolean().optional(),
});

const outputSchema = z.object({
  total: z.number(),
  succeeded: z.number().describe('Ran and exited 0.'),
  nonzero: z.number().describe('Ran and exited non-zero, by signal or timeout.'),
  failed: z.number().describe('Could not run (unknown, unreachable, refused).'),
  groups: z.array(groupSchema),
  results: z.array(z.object({ connection: z.string(), group: z.number(), exit_code: z.number().nullable().optional(), duration_ms: z.number().optional() })),
});

type Group = z.infer<typeof groupSchema>;

export function selectConnections(gateway: Gateway, names: string[] | undefined, tags: string[] | undefined): string[] {
  const selected = new Set<string>();
  for (const name of names ?? []) selected.add(gateway.connection(name).config.name);
  for (const tag of tags ?? []) {
    const tagged = gateway.config.connections.filter((c) => (c.tags ?? []).includes(tag));
    if (tagged.length === 0) throw new GatewayError('bad_input', `no connection carries tag "${tag}". Tags in use: ${[...new Set(gateway.config.connections.flatMap((c) => c.tags ?? []))].join(', ') || '(none)'}`);
    for (const c of tagged) selected.add(c.name);
  }
  if (selected.size === 0) throw new GatewayError('bad_input', 'name the target devices: give "connections" (names) and/or "tags"');
  return [...selected];
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * An error with the device's own name, address and port taken out, so 500 devices refusing connections form one
 * group ("connection refused by <host>:<port> for <connection>") instead of 500. The connection list says who.
 */
export function genericError(message: string, device: { name: string; host: string; port: number }): string {
  return message
    .replaceAll(`"${device.name}"`, '<connection>')
    .replaceAll(`${device.host}:${device.port}`, '<host>:<port>')
    .replace(new RegExp(`\\bport ${device.port}\\b`, 'g'), 'port <port>');
}

function groupKey(outcome: { result?: CommandResult; error?: string }): string {
  const r = outcome.result;
  const identity = r ? [r.exit_code, r.signal, r.timed_out, r.stdout, r.stderr] : ['error', outcome.error];
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

export function registerRunOnMany(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'run_on_many',
    {
      title: 'Run a command on many devices',
      description:
        'Runs one command on several devices (selected by connection names and/or tags) with bounded concurrency. Results are grouped by identical output, so identical answers appear once with the list of devices that gave them. Each device\'s own policy applies.',
      inputSchema: z
        .object({
          command: z.string().min(1).max(64 * 1024),
          connections: z.array(z.string().min(1)).max(10_000).optional(),
          tags: z.array(z.string().min(1)).max(100).optional(),
          concurrency: z.number().int().min(1).max(100).optional().describe('Devices worked on at once (default 10).'),
          ...commandOptionsShape,
        })
        .strict(),
      outputSchema,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    audited('run_on_many', async (args, ctx, who) => {
      const targets = selectConnections(gateway, args.connections, args.tags);
      const outcomes = await mapLimited(targets, args.concurrency ?? 10, async (connection) => {
        try {
          await authorize({ connection, command: args.command, ctx, who, canAsk: false });
          const outcome = await runCommandOnDevice(gateway, {
            connection,
            command: args.command,
            timeout_s: args.timeout_s,
            max_output_bytes: args.max_output_bytes,
            encoding: args.output_encoding,
            signal: ctx.mcpReq.signal,
            client: { ...who },
          });
          return { connection, result: toCommandResult(outcome) };
        } catch (err) {
          // Targets were checked by selectConnections, so the lookup can't fail here.
          return { connection, error: genericError(errorMessage(err), gateway.connection(connection).config) };
        }
      });

      const groups = new Map<string, Group>();
      const results = outcomes.map((o) => {
        const key = groupKey(o);
        let group = groups.get(key);
        if (!group) {
          const r = o.result;
          group = r
            ? { id: groups.size, connections: [], exit_code: r.exit_code, signal: r.signal, timed_out: r.timed_out, stdout: r.stdout, stderr: r.stderr, stdout_truncated: r.stdout_truncated, stderr_truncated: r.stderr_truncated }
            : { id: groups.size, connections: [], error: o.error };
          groups.set(key, group);
        }
        group.connections.push(o.connection);
        return { connection: o.connection, group: group.id, exit_code: o.result?.exit_code, duration_ms: o.result?.duration_ms };
      });
      const succeeded = outcomes.filter((o) => o.result && o.result.exit_code === 0).length;
      const failed = outcomes.filter((o) => o.error !== undefined).length;
      const structured = { total: targets.length, succeeded, nonzero: targets.length - succeeded - failed, failed, groups: [...groups.values()], results };
      const text = [
        `${targets.length} device(s): ${succeeded} exit 0, ${structured.nonzero} other exit, ${failed} could not run; ${groups.size} distinct answer(s)`,
        ...structured.groups.map((g) =>
          g.error !== undefined
            ? `[${g.connections.join(', ')}] error: ${g.error}`
            : `[${g.connections.join(', ')}] exit ${g.exit_code ?? g.signal}${g.stdout ? `\n${g.stdout}` : ''}${g.stderr ? `\n(stderr) ${g.stderr}` : ''}`,
        ),
      ].join('\n');
      return toolResult(structured, text);
    }),
  );
}
