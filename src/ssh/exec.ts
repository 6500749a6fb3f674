// Runs one command on a warm ssh2 connection: no pty, bounded output, streaming, and a timeout or cancellation
// that really stops the remote process — also for root logins, where sshd ignores the SSH "signal" request.
import type { Client, ClientChannel } from './ssh2.js';
import { OutputCapture, type CapturedOutput, type OutputEncoding } from './output.js';
import { shellQuote, ENV_NAME } from '../util/shell.js';
import { deviceText } from '../util/text.js';

export interface ExecRequest {
  command: string;
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs: number;
  maxOutputBytes: number;
  encoding?: OutputEncoding;
  signal?: AbortSignal;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  /** A separate short-lived connection to the same device, for a kill when this one has no channel to spare. */
  openSideClient?: () => Promise<Client>;
}

export interface ExecResult {
  exit_code: number | null;
  signal: string | null;
  stdout: CapturedOutput;
  stderr: CapturedOutput;
  duration_ms: number;
  timed_out: boolean;
  cancelled: boolean;
}

/** Raised when the connection dies under a running command: its outcome on the device is unknown. */
export class ConnectionLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionLostError';
  }
}

/**
 * Raised when the connection closed before the command was sent: ssh2 sends the exec request only once the
 * session channel is open, so nothing ran on the device and the command may safely go out on a new connection.
 */
export class CommandNotSentError extends Error {
  constructor(cause: Error) {
    super(`the SSH connection closed before the command was sent (${deviceText(cause)})`);
    this.name = 'CommandNotSentError';
  }
}

/** ssh2's errors for a connection that closed while the channel was still opening, or before anything was sent. */
const CLOSED_BEFORE_SEND = /^(No response from server|Not connected)$/;

// sshd starts each no-pty command in its own session (setsid), so the shell's PID is the command's process
// group. The wrapper reports it on stderr before the command starts; the gateway strips that line again.
const PGID_MARKER = '__mcp_ssh_gateway_pgid=';
const MARKER_SEARCH_LIMIT = 4096;
/** How long a stop waits for a PGID marker that is still on its way (timeout or cancel right after the start). */
const PGID_WAIT_MS = 3000;
/** After killing and closing, how long to wait for sshd to close the channel before giving up on it. */
const CLOSE_WAIT_MS = 5000;

export function wrapCommand(request: Pick<ExecRequest, 'command' | 'cwd' | 'env'>): string {
  const lines = [`printf '%s\\n' "${PGID_MARKER}$$" >&2`];
  for (const [name, value] of Object.entries(request.env ?? {})) {
    if (!ENV_NAME.test(name)) throw new Error(`env name "${name}" is not a valid variable name (letters, digits, _; not starting with a digit)`);
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  if (request.cwd !== undefined) lines.push(`cd -- ${shellQuote(request.cwd)} || exit 1`);
  lines.push(request.command);
  return lines.join('\n');
}

/** Finds and removes the PGID marker line at the start of stderr, passing everything else through untouched. */
class MarkerStripper {
  private pending: Buffer | null = Buffer.alloc(0);
  pgid?: number;
  private settle!: (pgid: number | undefined) => void;
  /** Resolves with the PGID once the marker is seen, or undefined once it can no longer come. */
  readonly found = new Promise<number | undefined>((resolve) => (this.settle = resolve));

  constructor(private readonly emit: (chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (this.pending === null) return this.emit(chunk);
    this.pending = Buffer.concat([this.pending, chunk]);
    const text = this.pending.toString('latin1');
    const at = text.indexOf(PGID_MARKER);
    const end = at >= 0 ? text.indexOf('\n', at) : -1;
    if (end >= 0) {
      this.pgid = Number(text.slice(at + PGID_MARKER.length, end)) || undefined;
      this.release(Buffer.concat([this.pending.subarray(0, at), this.pending.subarray(end + 1)]));
    } else if (this.pending.length > MARKER_SEARCH_LIMIT) {
      this.release(this.pending);
    }
  }

  flush(): void {
    if (this.pending !== null) this.release(this.pending);
  }

  private release(rest: Buffer): void {
    this.pending = null;
    this.settle(this.pgid);
    if (rest.length > 0) this.emit(rest);
  }
}

/**
 * `attach` runs synchronously inside ssh2's callback: a fast command's data, exit status and close can arrive in
 * the same packet batch as the exec reply, before any awaiting code would get to add its listeners.
 */
function openExec(client: Client, command: string, attach: (channel: ClientChannel) => void): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, { pty: false }, (err, channel) => {
        if (err) return reject(err);
        attach(channel);
        resolve(channel);
      });
    } catch (err) {
      reject(err as Error);
    }
  });
}

/** A shell script that stops whole process groups: TERM, up to `graceMs` for them to go, then KILL. */
function killScript(pgids: number[], graceMs: number): string {
  const steps = Math.max(1, Math.round(graceMs / 100));
  const groups = pgids.map((pgid) => `-${pgid}`).join(' ');
  return (
    `for g in ${groups}; do kill -TERM -- $g 2>/dev/null; done; i=0; ` +
    `while [ $i -lt ${steps} ]; do alive=0; for g in ${groups}; do kill -0 -- $g 2>/dev/null && alive=1; done; ` +
    `[ $alive = 0 ] && break; sleep 0.1; i=$((i+1)); done; ` +
    `for g in ${groups}; do kill -KILL -- $g 2>/dev/null; done; exit 0`
  );
}

async function runScript(client: Client, script: string, limitMs: number): Promise<void> {
  let closed!: Promise<void>;
  const channel = await openExec(client, script, (ch) => {
    closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
    ch.resume();
    ch.stderr.resume();
  });
  channel.end();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)))]);
  clearTimeout(timer);
}

const KILL_GRACE_MS = 2000;

/**
 * Kills process groups on one connection with at most one kill exec at a time, covering every group that is
 * waiting. Every session may be busy with commands that all time out together, and sshd refuses channels
 * beyond MaxSessions (10 by default): one extra channel usually fits, one per command does not. When even that
 * is refused, the kill runs over a separate short-lived connection.
 */
class GroupKiller {
  private pending = new Map<number, (() => void)[]>();
  private running = false;

  constructor(
    private readonly client: Client,
    private readonly openSide?: () => Promise<Client>,
  ) {}

  kill(pgid: number): Promise<void> {
    return new Promise((resolve) => {
      this.pending.set(pgid, [...(this.pending.get(pgid) ?? []), resolve]);
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.pending.size > 0) {
        const batch = this.pending;
        this.pending = new Map();
        await this.killNow([...batch.keys()]);
        for (const waiters of batch.values()) for (const done of waiters) done();
      }
    } finally {
      this.running = false;
    }
  }

  private async killNow(pgids: number[]): Promise<void> {
    const script = killScript(pgids, KILL_GRACE_MS);
    try {
      return await runScript(this.client, script, KILL_GRACE_MS + 3000);
    } catch {
      // No channel to spare on this connection (or it is gone): try a connection of our own.
    }
    if (!this.openSide) return;
    let side: Client | undefined;
    try {
      side = await this.openSide();
      await runScript(side, script, KILL_GRACE_MS + 3000);
    } catch {
      // The device can't be reached at all; nothing more can be done from here.
    } finally {
      side?.end();
    }
  }
}

const killers = new WeakMap<Client, GroupKiller>();

function killerFor(client: Client, openSide?: () => Promise<Client>): GroupKiller {
  let killer = killers.get(client);
  if (!killer) {
    killer = new GroupKiller(client, openSide);
    killers.set(client, killer);
  }
  return killer;
}

export async function execCommand(client: Client, request: ExecRequest): Promise<ExecResult> {
  const started = performance.now();
  const stdout = new OutputCapture(request.maxOutputBytes);
  const stderr = new OutputCapture(request.maxOutputBytes);
  if (request.signal?.aborted) {
    // Cancelled while it waited for a session slot: never start it.
    const empty = (c: OutputCapture): CapturedOutput => c.result(request.encoding);
    return { exit_code: null, signal: null, stdout: empty(stdout), stderr: empty(stderr), duration_ms: 0, timed_out: false, cancelled: true };
  }
  const stripper = new MarkerStripper((chunk) => {
    stderr.push(chunk);
    request.onOutput?.('stderr', chunk);
  });

  let exitCode: number | null = null;
  let exitSignal: string | null = null;
  let sawExit = false;
  let stopReason: 'timeout' | 'cancel' | undefined;
  let closed!: Promise<void>;

  const channel = await openExec(client, wrapCommand(request), (ch) => {
    closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
    ch.on('data', (chunk: Buffer) => {
      stdout.push(chunk);
      request.onOutput?.('stdout', chunk);
    });
    ch.stderr.on('data', (chunk: Buffer) => stripper.push(chunk));
    ch.on('exit', (code: number | null, signalName?: string) => {
      sawExit = true;
      exitCode = typeof code === 'number' ? code : null;
      exitSignal = signalName ?? null;
    });
  }).catch((err: Error) => {
    throw CLOSED_BEFORE_SEND.test(err.message) ? new CommandNotSentError(err) : err;
  });

  const stop = (reason: 'timeout' | 'cancel'): void => {
    if (stopReason || sawExit) return;
    stopReason = reason;
    try {
      channel.signal('TERM'); // Enough for non-root logins; root needs the process-group kill below.
    } catch {
      /* channel already closing */
    }
    const killed = (async () => {
      // Right after the start the PGID marker may still be on its way: wait for it, or the command would keep
      // running (root ignores the signal request) and sshd would never close the channel.
      let wait: NodeJS.Timeout | undefined;
      const pgid =
        stripper.pgid ?? (await Promise.race([stripper.found, new Promise<undefined>((r) => (wait = setTimeout(() => r(undefined), PGID_WAIT_MS)))]));
      clearTimeout(wait);
      if (pgid) await killerFor(client, request.openSideClient).kill(pgid);
    })();
    // Close our side once the group is gone (or after the grace period) so the result returns promptly.
    void killed.then(() => {
      channel.close();
      // sshd closes a session channel only once its command has exited: never wait for that forever.
      giveUp = setTimeout(forceClosed, CLOSE_WAIT_MS);
      giveUp.unref();
    });
  };
  let giveUp: NodeJS.Timeout | undefined;
  let forceClosed: () => void = () => undefined;
  const forced = new Promise<void>((resolve) => (forceClosed = resolve));

  const timer = setTimeout(() => stop('timeout'), request.timeoutMs);
  const onAbort = (): void => stop('cancel');
  request.signal?.addEventListener('abort', onAbort, { once: true });
  if (request.signal?.aborted) onAbort();

  if (request.stdin !== undefined) channel.end(request.stdin);
  else channel.end();

  let onClientGone: (err?: Error) => void = () => undefined;
  const lost = new Promise<never>((_, reject) => {
    onClientGone = (err?: Error): void =>
      reject(new ConnectionLostError(`the SSH connection was lost while the command was running${err ? ` (${deviceText(err)})` : ''}; it may or may not have finished on the device`));
  });
  const onClose = (): void => onClientGone();
  client.on('close', onClose);
  client.on('error', onClientGone);
  try {
    await Promise.race([closed, lost, forced]);
  } finally {
    clearTimeout(timer);
    clearTimeout(giveUp);
    request.signal?.removeEventListener('abort', onAbort);
    client.off('close', onClose);
    client.off('error', onClientGone);
  }
  stripper.flush();
  if (!sawExit && !stopReason) {
    throw new ConnectionLostError('the device closed the command channel without an exit status; it may or may not have finished');
  }
  return {
    exit_code: exitCode,
    signal: exitSignal,
    stdout: stdout.result(request.encoding),
    stderr: stderr.result(request.encoding),
    duration_ms: Math.round(performance.now() - started),
    timed_out: stopReason === 'timeout',
    cancelled: stopReason === 'cancel',
  };
}
