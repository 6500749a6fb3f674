// Running a command on one device, the same way for every tool (run_command, run_action, run_on_many):
// connection → SSH → audit. The policy decision is made by the caller before this is reached.
import { randomUUID } from 'node:crypto';
import type { Gateway } from './gateway.js';
import { execCommand, CommandNotSentError, ConnectionLostError, type ExecRequest, type ExecResult } from '../ssh/exec.js';
import type { DeviceConnection } from '../ssh/connection.js';
import type { Client } from '../ssh/ssh2.js';
import type { OutputEncoding } from '../ssh/output.js';
import { GatewayError } from '../errors.js';
import { deviceText } from '../util/text.js';

export const DEFAULT_COMMAND_TIMEOUT_S = 60;
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024;

export interface CommandRequest {
  connection: string;
  command: string;
  /** What the audit log records as the command (an action name and params, never env values or stdin). */
  auditAs?: Record<string, unknown>;
  timeout_s?: number;
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  max_output_bytes?: number;
  encoding?: OutputEncoding;
  signal?: AbortSignal;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  /** Who asked: MCP client identity (and HTTP principal). */
  client?: Record<string, unknown>;
}

export interface CommandOutcome extends ExecResult {
  connection: string;
  command_id: string;
}

export async function runCommandOnDevice(gateway: Gateway, request: CommandRequest): Promise<CommandOutcome> {
  const device = gateway.connection(request.connection);
  const maxOutput = request.max_output_bytes ?? gateway.config.gateway.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const timeoutS = request.timeout_s ?? device.config.timeouts?.command_s ?? gateway.config.gateway.timeouts?.command_s ?? DEFAULT_COMMAND_TIMEOUT_S;
  const commandId = randomUUID();
  const base = { connection: request.connection, command_id: commandId };
  // What ran, on command_end too: get_history then shows each command with its exit code in one entry.
  const what = request.auditAs ?? { command: request.command };

  // A gateway that is shutting down stops its commands too (killing them on the device), rather than leaving them running.
  // (Not AbortSignal.any: on Node 20 every call leaves ~60 bytes behind on the long-lived gateway signal.)
  const stop = linkedAbort([request.signal, gateway.stopping]);
  const signal = stop.signal;
  return gateway.track(device.withSession(async (client) => {
    await gateway.record({
      event: 'command_start',
      ...base,
      ...what,
      cwd: request.cwd,
      env_names: request.env ? Object.keys(request.env) : undefined,
      stdin_bytes: request.stdin !== undefined ? Buffer.byteLength(request.stdin) : undefined,
      timeout_s: timeoutS,
      client: request.client,
    }, { durable: false }); // written before the command is sent; fsynced with command_end, before the result returns
    let result: ExecResult;
    try {
      result = await execOnLiveConnection(device, client, {
        command: request.command,
        cwd: request.cwd,
        env: request.env,
        stdin: request.stdin,
        timeoutMs: timeoutS * 1000,
        maxOutputBytes: maxOutput,
        encoding: request.encoding,
        signal,
        onOutput: request.onOutput,
        openSideClient: () => device.openSideClient(),
      });
    } catch (err) {
      const lost = err instanceof ConnectionLostError;
      if (lost) device.noteFailure(err);
      await gateway.record({ event: 'command_end', ...base, ...what, error: (err as Error).message });
      if (err instanceof GatewayError) throw err; // reconnecting failed: the command never left, the error says why
      if (lost) throw new GatewayError('connection_lost', `${(err as Error).message}. Check the device (list_connections shows its state) before running it again.`);
      throw new GatewayError('connect_failed', `could not run the command on "${request.connection}": ${deviceText(err)}`);
    }
    await gateway.record({
      event: 'command_end',
      ...base,
      ...what,
      exit_code: result.exit_code,
      signal: result.signal,
      duration_ms: result.duration_ms,
      timed_out: result.timed_out,
      cancelled: result.cancelled,
      stdout_bytes: result.stdout.total_bytes,
      stderr_bytes: result.stderr.total_bytes,
    });
    return { ...result, ...base };
  }).finally(stop.release));
}

/**
 * The warm connection may die between the session slot and the channel open (the audit write yields, and a device
 * that just went away is only noticed when its socket closes). Until the command is sent it can go out on a fresh
 * connection instead: once, so a device that keeps dropping still fails with the reason.
 */
export async function execOnLiveConnection(device: DeviceConnection, client: Client, request: ExecRequest): Promise<ExecResult> {
  try {
    return await execCommand(await device.usableClient(client), request);
  } catch (err) {
    if (!(err instanceof CommandNotSentError)) throw err;
    return execCommand(await device.usableClient(client), request);
  }
}

/** An abort signal that fires when any source does; `release` detaches it so nothing outlives the command. */
function linkedAbort(sources: (AbortSignal | undefined)[]): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  const attached = sources.filter((s): s is AbortSignal => s !== undefined);
  for (const source of attached) {
    if (source.aborted) controller.abort();
    else source.addEventListener('abort', abort, { once: true });
  }
  return { signal: controller.signal, release: () => attached.forEach((source) => source.removeEventListener('abort', abort)) };
}
