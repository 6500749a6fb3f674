// run_action: a named command template from the config, with typed parameters validated and shell-quoted.
// Actions are the operator's way to give an agent power without a shell: only what the template says runs.
import { z } from 'zod';
import type { McpServer } from '@modelcontextprotocol/server';
import type { ToolContext } from '../context.js';
import { toolResult } from '../result.js';
import { OutputStreamer } from '../progress.js';
import { runCommandOnDevice } from '../../gateway/commands.js';
import { commandResultSchema, toCommandResult, summarize } from './run-command.js';
import { GatewayError } from '../../errors.js';
import { renderAction, describeActions } from '../../policy/index.js';
import type { Gateway } from '../../gateway/gateway.js';
import { pathEscape } from '../../gateway/device-paths.js';

function actionCatalog(gateway: Gateway): string {
  const sections = gateway.config.connections
    .filter((c) => Object.keys(c.actions ?? {}).length > 0)
    .map((c) => `On "${c.name}":\n${describeActions(c.actions ?? {})}`);
  return sections.length > 0 ? `\n\nAvailable actions:\n${sections.join('\n')}` : '\n\n(No actions are configured.)';
}

export function registerRunAction(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'run_action',
    {
      title: 'Run a named action',
      description:
        'Runs an operator-defined action (a command template with typed parameters) on a device. Parameters are validated against the action\'s schema and passed as quoted literals, so they can never change the command. Returns the same result as run_command.' +
        actionCatalog(gateway),
      inputSchema: z
        .object({
          connection: z.string().min(1),
          action: z.string().min(1),
          params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
        })
        .strict(),
      outputSchema: commandResultSchema.extend({ action: z.string() }),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    audited('run_action', async (args, ctx, who) => {
      const device = gateway.connection(args.connection);
      const actions = device.config.actions ?? {};
      const action = Object.hasOwn(actions, args.action) ? actions[args.action] : undefined; // not `constructor` & co.
      if (!action) {
        const known = Object.keys(actions);
        throw new GatewayError('bad_input', `no action "${args.action}" on "${args.connection}". Actions there: ${known.length > 0 ? known.join(', ') : '(none)'}.`);
      }
      const rendered = renderAction(args.action, action, args.params ?? {});
      if (!rendered.ok) {
        await gateway.record({ event: 'action_rejected', connection: args.connection, action: args.action, reason: rendered.error, client: who });
        throw new GatewayError('bad_input', `action "${args.action}": ${rendered.error} Nothing was run.`);
      }
      const escape = await pathEscape(gateway, args.connection, rendered.paths, ctx.mcpReq.signal);
      if (escape) {
        await gateway.record({ event: 'action_rejected', connection: args.connection, action: args.action, reason: escape, client: who });
        throw new GatewayError('bad_input', `action "${args.action}": ${escape}. Nothing was run; pass a path whose real location is under the allowed roots.`);
      }
      await authorize({ connection: args.connection, command: rendered.command, ctx, who, action: { name: args.action, confirm: action.confirm === true } });
      const streamer = OutputStreamer.forRequest(ctx);
      const outcome = await runCommandOnDevice(gateway, {
        connection: args.connection,
        command: rendered.command,
        auditAs: { action: args.action, params: args.params ?? {}, command: rendered.command },
        timeout_s: action.timeout_s,
        signal: ctx.mcpReq.signal,
        onOutput: streamer ? (stream, chunk) => streamer.push(stream, chunk) : undefined,
        client: { ...who },
      });
      streamer?.flush();
      const result = { ...toCommandResult(outcome), action: args.action };
      return toolResult(result, `action ${args.action}: ${summarize(result)}`);
    }),
  );
}
