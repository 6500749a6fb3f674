// The scripted agent session: each step makes real tool calls through the MCP client, prints them with a compact
// result, and checks what a user relies on (a refused command never ran, a hostile parameter stayed a literal).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readAuditRecords, verifyAuditFiles } from '../audit/index.js';
import { DIRECT, TUNNEL } from './config.js';
import { auditLine } from './audit-view.js';
import { outputLines, wrap, type Printer } from './print.js';
import type { Fleet } from './fleet.js';
import type { ServeSession, ToolAnswer } from './serve-client.js';

export interface StepContext {
  fleet: Fleet;
  session: ServeSession;
  print: Printer;
}

export interface Step {
  title: string;
  run(ctx: StepContext): Promise<void>;
}

/** A step's expectation did not hold. */
export class Unexpected extends Error {}

function expect(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Unexpected(what);
}

interface CommandResult {
  exit_code: number | null;
  signal?: string | null;
  stdout: string;
  stderr: string;
  duration_ms: number;
}

async function call<T = Record<string, unknown>>(ctx: StepContext, tool: string, args: Record<string, unknown>): Promise<ToolAnswer<T>> {
  ctx.print.call(tool, args);
  return ctx.session.call<T>(tool, args);
}

function commandSummary(r: CommandResult): string[] {
  const head = `exit ${r.exit_code ?? r.signal} · ${r.duration_ms} ms`;
  const out = outputLines(r.stdout);
  const err = outputLines(r.stderr).map((l) => `(stderr) ${l}`);
  const body = [...out, ...err];
  return body.length === 0 ? [head] : [`${head} · ${body[0]}`, ...body.slice(1)];
}

async function runOk(ctx: StepContext, connection: string, command: string): Promise<CommandResult> {
  const answer = await call<CommandResult>(ctx, 'run_command', { connection, command });
  expect(!answer.isError, `run_command on ${connection} failed: ${answer.text}`);
  ctx.print.result(commandSummary(answer.structured));
  expect(answer.structured.exit_code === 0, `expected exit 0 from "${command}", got ${answer.structured.exit_code}`);
  return answer.structured;
}

async function refused(ctx: StepContext, connection: string, command: string): Promise<void> {
  const answer = await call(ctx, 'run_command', { connection, command });
  expect(answer.isError, `"${command}" was not refused`);
  ctx.print.result(['isError: true — what the agent reads:', ...wrap(ctx.print.short(answer.text), 96).map((l) => `  ${l}`)]);
  expect(/refused/i.test(answer.text) && /Nothing was run/i.test(answer.text), 'the refusal does not say what happened');
}

async function waitForTunnel(ctx: StepContext, timeoutMs = 15_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    const up = await readAuditRecords(ctx.fleet.auditPath, { events: ['tunnel_up'], connection: TUNNEL }).catch(() => []);
    if (up.length > 0) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      const why = ctx.fleet.tunnelClient.lastError;
      throw new Unexpected(`${TUNNEL} did not dial in within ${timeoutMs / 1000} s${why ? ` (ssh said: ${why})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface ConnectionView {
  name: string;
  mode: string;
  user: string;
  host: string;
  port: number;
  tags: string[];
  state: string;
  tunnel: { up: boolean; peer?: string } | null;
}

const listConnections: Step = {
  title: 'list_connections — what the agent can reach (the tunnel device has dialed in)',
  async run(ctx) {
    const argv = ctx.fleet.tunnelArgv.filter((a, i, all) => a !== '-o' && all[i - 1] !== '-o' && a !== '-F' && all[i - 1] !== '-F');
    ctx.print.note(`${TUNNEL} dials the gateway: ${argv.join(' ')}`);
    const ms = await waitForTunnel(ctx);
    ctx.print.note(`tunnel up after ${(ms / 1000).toFixed(1)} s`);
    const answer = await call<{ connections: ConnectionView[] }>(ctx, 'list_connections', {});
    expect(!answer.isError, `list_connections failed: ${answer.text}`);
    const list = answer.structured.connections;
    ctx.print.result(
      list.map((c) => {
        const where = `${c.user}@${c.host}:${c.port}`;
        const tunnel = c.tunnel ? ` · tunnel ${c.tunnel.up ? `up from ${c.tunnel.peer}` : 'down'}` : '';
        return `${c.name.padEnd(10)} ${c.mode.padEnd(7)} ${where.padEnd(22)} tags ${c.tags.join(',').padEnd(9)} ${c.state}${tunnel}`;
      }),
    );
    expect(list.length === 2, `expected 2 connections, got ${list.length}`);
    expect(list.find((c) => c.name === DIRECT)?.mode === 'direct', `${DIRECT} is not listed in direct mode`);
    expect(list.find((c) => c.name === TUNNEL)?.tunnel?.up === true, `${TUNNEL} is not listed with its tunnel up`);
    ctx.print.ok('both devices listed; pi-tunnel reachable through its tunnel');
  },
};

const commandOnDirect: Step = {
  title: `run_command on ${DIRECT} (the gateway dials its sshd, host key pinned)`,
  async run(ctx) {
    await runOk(ctx, DIRECT, 'uname -sr');
    ctx.print.ok('ran; exit code and output come back as data');
  },
};

const commandOnTunnel: Step = {
  title: `run_command on ${TUNNEL} (through the device's reverse tunnel)`,
  async run(ctx) {
    await runOk(ctx, TUNNEL, 'df -h /');
    ctx.print.ok('ran through the tunnel the device opened; no port was opened for it on the gateway host');
  },
};

const fanOut: Step = {
  title: 'run_on_many across tag "pi" (identical answers grouped)',
  async run(ctx) {
    const answer = await call<{ total: number; succeeded: number; groups: { connections: string[]; exit_code?: number | null; stdout?: string; error?: string }[] }>(
      ctx,
      'run_on_many',
      { command: 'uname -sr', tags: ['pi'] },
    );
    expect(!answer.isError, `run_on_many failed: ${answer.text}`);
    const { total, succeeded, groups } = answer.structured;
    ctx.print.result([
      `${total} device(s), ${succeeded} exit 0, ${groups.length} distinct answer(s)`,
      ...groups.map((g) => `[${g.connections.join(', ')}] ${g.error ?? `exit ${g.exit_code} · ${outputLines(g.stdout, 1)[0] ?? ''}`}`),
    ]);
    expect(total === 2 && succeeded === 2, `expected 2 of 2 devices to succeed, got ${succeeded} of ${total}`);
    expect(groups.length === 1 && groups[0]!.connections.length === 2, 'expected one group holding both devices');
    ctx.print.ok('both devices answered; the identical answer is sent once');
  },
};

const action: Step = {
  title: 'run_action tail_log with typed parameters',
  async run(ctx) {
    const answer = await call<CommandResult>(ctx, 'run_action', { connection: DIRECT, action: 'tail_log', params: { lines: 3 } });
    expect(!answer.isError, `run_action failed: ${answer.text}`);
    ctx.print.result(commandSummary(answer.structured));
    expect(answer.structured.exit_code === 0, `expected exit 0, got ${answer.structured.exit_code}`);
    expect(outputLines(answer.structured.stdout, 10).length === 3, 'expected 3 lines of log');
    ctx.print.ok('only the operator\'s template ran, with a validated integer and the default path');
  },
};

const hostileAction: Step = {
  title: 'run_action with hostile parameters (values are checked, then passed as quoted literals)',
  async run(ctx) {
    const { marker } = ctx.fleet;
    const logDir = ctx.fleet.logDirOf(ctx.fleet.direct);
    const badInt = await call(ctx, 'run_action', { connection: DIRECT, action: 'tail_log', params: { lines: '3; reboot' } });
    expect(badInt.isError, 'a non-integer "lines" was accepted');
    ctx.print.result(['isError: true —', ...wrap(ctx.print.short(badInt.text), 96).map((l) => `  ${l}`)]);

    const file = path.join(logDir, `$(touch ${marker})`);
    const answer = await call<CommandResult>(ctx, 'run_action', { connection: DIRECT, action: 'tail_log', params: { lines: 3, file } });
    expect(!answer.isError, `run_action failed: ${answer.text}`);
    ctx.print.result(commandSummary(answer.structured));
    expect(answer.structured.exit_code !== 0 && answer.structured.stderr.includes('$(touch'), 'expected tail to look for a file literally named "$(touch ...)"');
    expect(!existsSync(marker), `${marker} exists: the parameter was run as code`);
    ctx.print.ok('tail looked for a file literally named "$(touch ...)"; $DEMO/PWNED was not created');
  },
};

const refusals: Step = {
  title: 'commands the policy refuses (they never reach the device)',
  async run(ctx) {
    const appLog = path.join(ctx.fleet.logDirOf(ctx.fleet.direct), 'app.log');
    await refused(ctx, DIRECT, `rm -f ${appLog}`);
    expect(existsSync(appLog), `${appLog} is gone: the refused rm ran`);
    await refused(ctx, TUNNEL, `uname -sr && touch ${ctx.fleet.marker}`);
    expect(!existsSync(ctx.fleet.marker), `${ctx.fleet.marker} exists: the refused touch ran`);
    ctx.print.ok('refused with the rule and what to do instead; app.log still there, $DEMO/PWNED never created');
  },
};

const history: Step = {
  title: 'get_history — what the agent (or its human) can review',
  async run(ctx) {
    type Entry = { seq: number; event: string; connection?: string; tool?: string; command?: string; exit_code?: number | null };
    const answer = await call<{ entries: Entry[] }>(ctx, 'get_history', { limit: 8 });
    expect(!answer.isError, `get_history failed: ${answer.text}`);
    const entries = answer.structured.entries;
    ctx.print.result(
      entries.map((e) =>
        `#${e.seq} ${e.event.padEnd(14)} ${(e.connection ?? '').padEnd(10)} ${e.tool ? `${e.tool} ` : ''}${e.command ?? ''}${e.exit_code !== undefined ? ` → exit ${e.exit_code}` : ''}`.trimEnd(),
      ),
    );
    expect(entries.some((e) => e.event === 'policy_denial'), 'no policy_denial in the history');
    expect(entries.some((e) => e.event === 'command_end'), 'no command_end in the history');
    ctx.print.ok('commands with exit codes and the refusals are on record');
  },
};

const auditTrail: Step = {
  title: 'the audit log (session ended: the tunnel device hung up, the client closed, serve stopped)',
  async run(ctx) {
    await ctx.fleet.tunnelClient.stop();
    await ctx.session.close();
    const records = await readAuditRecords(ctx.fleet.auditPath);
    ctx.print.note(`${ctx.fleet.auditPath}: ${records.length} records, one line each`);
    for (const r of records) ctx.print.note(auditLine(r));
    const events = new Set(records.map((r) => r.event));
    for (const needed of ['gateway_start', 'tunnel_up', 'ssh_connect', 'command_end', 'policy_denial', 'gateway_stop']) {
      expect(events.has(needed), `no ${needed} record in the audit log`);
    }
    ctx.print.ok('every connection event, command and refusal is recorded');
  },
};

const verify: Step = {
  title: 'audit verify (the hash chain)',
  async run(ctx) {
    ctx.print.note(`$ mcp-ssh-gateway audit verify ${ctx.fleet.auditPath}`);
    const verdict = await verifyAuditFiles([ctx.fleet.auditPath]);
    if (verdict.ok) {
      ctx.print.note(`ok: ${verdict.records} record(s) in ${verdict.files} file(s) (seq ${verdict.firstSeq}–${verdict.lastSeq}), hash chain intact`);
      ctx.print.ok('verified: no record edited, removed or reordered');
    } else {
      throw new Unexpected(`TAMPERED: ${verdict.file} line ${verdict.line}: ${verdict.reason}`);
    }
  },
};

export const STEPS: Step[] = [listConnections, commandOnDirect, commandOnTunnel, fanOut, action, hostileAction, refusals, history, auditTrail, verify];
