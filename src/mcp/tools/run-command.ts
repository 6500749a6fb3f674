// run_command: one command on one device, no pty, with a result the agent can rely on.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { McpServer } from '@modelcontextprotocol/server';
import type { ToolContext } from '../context.js';
import { toolResult } from '../result.js';
import { OutputStreamer } from '../progress.js';
import { runCommandOnDevice, type CommandOutcome } from '../../gateway/commands.js';
import { ENV_NAME } from '../../util/shell.js';
import { printable } from '../../util/text.js';

export const commandResultSchema = z.object({
  connection: z.string(),
  exit_code: z.number().nullable().describe('null when the command was killed by a signal or stopped by the gateway'),
  signal: z.string().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  stdout_truncated: z.boolean(),
  stderr_truncated: z.boolean(),
  stdout_total_bytes: z.number(),
  stderr_total_bytes: z.number(),
  encoding: z.enum(['utf8', 'base64']),
  stdout_invalid_utf8: z.boolean().describe('stdout was not valid UTF-8; invalid bytes show as U+FFFD. Re-run with output_encoding "base64" for exact bytes.'),
  stderr_invalid_utf8: z.boolean(),
  duration_ms: z.number(),
  timed_out: z.boolean(),
  cancelled: z.boolean(),
});

export type CommandResult = z.infer<typeof commandResultSchema>;

export const commandOptionsShape = {
  timeout_s: z.number().positive().max(86_400).optional().describe('Kill the command (its whole process group on the device) after this many seconds. Default 60 or the connection\'s timeouts.command_s.'),
  max_output_bytes: z.number().int().min(256).max(16 * 1024 * 1024).optional().describe('Cap per stream; the head and tail are kept and total byte counts reported. Default 64 KiB.'),
  output_encoding: z.enum(['utf8', 'base64']).optional().describe('base64 returns the exact bytes (for binary output).'),
};

export const runCommandInput = z
  .object({
    connection: z.string().min(1).describe('Connection name from list_connections.'),
    command: z.string().min(1).max(64 * 1024).describe('Shell command line, run by the login shell on the device without a pty.'),
    cwd: z.string().min(1).max(4096).optional().describe('Directory to run in.'),
    env: z.record(z.string().regex(ENV_NAME, 'variable names are letters, digits and _'), z.string().max(32 * 1024)).optional().describe('Extra environment variables.'),
    stdin: z.string().max(8 * 1024 * 1024).optional().describe('Text fed to the command\'s standard input (then EOF).'),
    ...commandOptionsShape,
  })
  .strict();

export function toCommandResult(outcome: CommandOutcome): CommandResult {
  return {
    connection: outcome.connection,
    exit_code: outcome.exit_code,
    signal: outcome.signal,
    stdout: outcome.stdout.text,
    stderr: outcome.stderr.text,
    stdout_truncated: outcome.stdout.truncated,
    stderr_truncated: outcome.stderr.truncated,
    stdout_total_bytes: outcome.stdout.total_bytes,
    stderr_total_bytes: outcome.stderr.total_bytes,
    encoding: outcome.stdout.encoding,
    stdout_invalid_utf8: outcome.stdout.invalid_utf8,
    stderr_invalid_utf8: outcome.stderr.invalid_utf8,
    duration_ms: outcome.duration_ms,
    timed_out: outcome.timed_out,
    cancelled: outcome.cancelled,
  };
}

export function summarize(r: CommandResult): string {
  const how = r.timed_out
    ? 'timed out and was killed'
    : r.cancelled
      ? 'was cancelled and killed'
      : r.signal
        ? `killed by signal ${r.signal}`
        : `exit ${r.exit_code}`;
  const parts = [`${r.connection}: ${how} in ${r.duration_ms} ms`];
  if (r.stdout_total_bytes > 0) parts.push(`--- stdout (${r.stdout_total_bytes} bytes${r.stdout_truncated ? ', truncated' : ''}) ---\n${r.stdout}`);
  if (r.stderr_total_bytes > 0) parts.push(`--- stderr (${r.stderr_total_bytes} bytes${r.stderr_truncated ? ', truncated' : ''}) ---\n${r.stderr}`);
  if (r.stdout_invalid_utf8 || r.stderr_invalid_utf8) parts.push('(output was not valid UTF-8; use output_encoding "base64" for exact bytes)');
  return parts.join('\n');
}

/**
 * What a human approving a command must also see, and what the approval is bound to: the stdin it gets (a `sh` fed
 * a script is the script). Its size, digest and start.
 */
function stdinDetail(stdin: string | undefined): string | undefined {
  if (stdin === undefined) return undefined;
  const preview = printable(stdin, 400);
  return `with stdin: ${Buffer.byteLength(stdin)} bytes, sha256 ${createHash('sha256').update(stdin).digest('hex')}, starting: ${preview}`;
}

export function registerRunCommand(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'run_command',
    {
      title: 'Run a command on a device',
      description:
        'Runs a shell command on one device over SSH (no pty) and returns exit code, signal, stdout/stderr (head and tail kept when large) and duration. A non-zero exit is a normal result, not an error. Output streams as progress notifications when you send a progressToken; cancelling the request kills the remote process.',
      inputSchema: runCommandInput,
      outputSchema: commandResultSchema,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    audited('run_command', async (args, ctx, who) => {
      await authorize({ connection: args.connection, command: args.command, env: args.env, cwd: args.cwd, ctx, who, detail: stdinDetail(args.stdin) });
      const streamer = OutputStreamer.forRequest(ctx);
      const outcome = await runCommandOnDevice(gateway, {
        connection: args.connection,
        command: args.command,
        timeout_s: args.timeout_s,
        cwd: args.cwd,
        env: args.env,
        stdin: args.stdin,
        max_output_bytes: args.max_output_bytes,
        encoding: args.output_encoding,
        signal: ctx.mcpReq.signal,
        onOutput: streamer ? (stream, chunk) => streamer.push(stream, chunk) : undefined,
        client: { ...who },
      });
      streamer?.flush();
      const result = toCommandResult(outcome);
      return toolResult(result, summarize(result));
    }),
  );
}
