// Staying up (issue 6): real OpenSSH sshd processes as devices, the built CLI `serve` as the gateway, the real MCP
// SDK client. 100 concurrent commands over 10 connections, a host key that changes between calls, the circuit
// breaker and its half-open probe, a silent device that must not slow the others, and malformed or oversize
// MCP input. After every fault the gateway keeps serving and the audit chain verifies.
// (sshd killed mid-command, the silent-sshd timeout itself, output floods and cancellation are covered in
// connection-faults / run-command tests.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { Sshd, freePort, fingerprintOf, makeKeyPair, type KeyPair } from '../helpers/sshd.js';
import { CLI, startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';

type AuditRecord = { seq: number; event: string; [field: string]: unknown };
type ConnectionView = { name: string; state: string; failures: number; last_error: string | null; circuit_retry_at: string | null };
type CommandResult = { connection: string; exit_code: number | null; stdout: string; stderr: string; duration_ms: number };

const POOL = 10;
const SSHDS = 3;

let keysDir: string;
let clientKey: KeyPair;
let breakerHostKey: KeyPair;
const pool: Sshd[] = [];
let rotating: Sshd;
let breakerSshd: Sshd | undefined;
let breakerPort: number;
let silent: net.Server;
const silentSockets = new Set<net.Socket>();
let silentPort: number;
let gw: GatewayUnderTest;
let connections: Record<string, unknown>[];

before(async () => {
  keysDir = await mkdtemp(path.join(tmpdir(), 'mcpgw-resilience-'));
  clientKey = await makeKeyPair(keysDir, 'client_ed25519');
  breakerHostKey = await makeKeyPair(keysDir, 'breaker_host_ed25519');
  for (let i = 0; i < SSHDS; i++) pool.push(await Sshd.start({ clientKey }));
  rotating = await Sshd.start({ clientKey });
  breakerPort = await freePort(); // nothing listens here until the breaker test starts an sshd on it

  // A device that accepts TCP and never says a word.
  silent = net.createServer((sock) => {
    silentSockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => silentSockets.delete(sock));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentPort = (silent.address() as net.AddressInfo).port;

  const user = pool[0]!.user;
  connections = [
    ...Array.from({ length: POOL }, (_, i) => directConnection(pool[i % SSHDS]!, `c${i}`, { tags: ['pool'] })),
    directConnection(rotating, 'rotating'),
    {
      name: 'breaker',
      mode: 'direct',
      user,
      host: '127.0.0.1',
      port: breakerPort,
      id_file: clientKey.privatePath,
      host_key: fingerprintOf(breakerHostKey.publicLine),
      timeouts: { connect_s: 3 },
      retry: { attempts: 1, failure_threshold: 2, cooldown_s: 2 },
    },
    {
      name: 'silent',
      mode: 'direct',
      user,
      host: '127.0.0.1',
      port: silentPort,
      id_file: clientKey.privatePath,
      host_key: fingerprintOf(breakerHostKey.publicLine),
      timeouts: { connect_s: 5 },
      retry: { attempts: 1 },
    },
  ];
  gw = await startGateway({ gateway: {}, connections }, { clientName: 'resilience-test' });
});

after(async () => {
  await gw?.close();
  for (const sock of silentSockets) sock.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
  for (const sshd of [...pool, rotating, breakerSshd]) await sshd?.stop();
  await rm(keysDir, { recursive: true, force: true });
});

async function readAudit(): Promise<AuditRecord[]> {
  const text = await readFile(gw.auditPath, 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);
}

function auditVerify(file: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'audit', 'verify', file], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (err as { code?: unknown }).code : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout: stdout + stderr });
    });
  });
}

async function listConnections(): Promise<Map<string, ConnectionView>> {
  const r = await callOk<{ connections: ConnectionView[] }>(gw, 'list_connections', {});
  return new Map(r.connections.map((c) => [c.name, c]));
}

function assertAlive(): void {
  const pid = gw.pid();
  assert.ok(pid, 'gateway has a pid');
  process.kill(pid, 0); // throws if the process is gone
}

async function assertServing(connection = 'c0'): Promise<void> {
  assertAlive();
  const marker = randomBytes(4).toString('hex');
  const r = await callOk<CommandResult>(gw, 'run_command', { connection, command: `echo alive-${marker}` });
  assert.equal(r.exit_code, 0);
  assert.equal(r.stdout, `alive-${marker}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('100 concurrent run_command calls over 10 connections: every result correct, none lost, crossed or duplicated', async () => {
  const run = randomBytes(4).toString('hex');
  const calls = Array.from({ length: 100 }, (_, i) => {
    const connection = `c${i % POOL}`;
    const token = `tok-${run}-${i}`;
    const exit = i % 7;
    // $SSH_CONNECTION's 4th field is the sshd's port: proves which device ran it.
    const command = `echo ${token} "\${SSH_CONNECTION##* }"; echo err-${token} >&2; sleep 0.0${i % 5}; exit ${exit}`;
    return { i, connection, token, exit, command, port: pool[(i % POOL) % SSHDS]!.port };
  });

  const started = Date.now();
  const results = await Promise.all(calls.map((c) => gw.client.callTool({ name: 'run_command', arguments: { connection: c.connection, command: c.command } })));
  const elapsed = Date.now() - started;

  results.forEach((result, i) => {
    const c = calls[i]!;
    assert.ok(!result.isError, `call ${i} failed: ${JSON.stringify(result.content)}`);
    const r = result.structuredContent as CommandResult;
    assert.equal(r.connection, c.connection, `call ${i}: connection`);
    assert.equal(r.stdout, `${c.token} ${c.port}\n`, `call ${i}: stdout from the right device`);
    assert.equal(r.stderr, `err-${c.token}\n`, `call ${i}: stderr`);
    assert.equal(r.exit_code, c.exit, `call ${i}: exit code`);
  });
  assert.ok(elapsed < 30_000, `100 calls took ${elapsed} ms`);

  const records = await readAudit();
  for (const c of calls) {
    const mentions = (r: AuditRecord) => typeof r.command === 'string' && r.command.includes(`${c.token} `);
    const toolCalls = records.filter((r) => r.event === 'tool_call' && mentions(r));
    const starts = records.filter((r) => r.event === 'command_start' && mentions(r));
    assert.equal(toolCalls.length, 1, `exactly one tool_call for ${c.token}`);
    assert.equal(starts.length, 1, `exactly one command_start for ${c.token}`);
    assert.equal(starts[0]!.connection, c.connection);
    const ends = records.filter((r) => r.event === 'command_end' && r.command_id === starts[0]!.command_id);
    assert.equal(ends.length, 1, `exactly one command_end for ${c.token}`);
    assert.equal(ends[0]!.exit_code, c.exit, `audited exit code for ${c.token}`);
    assert.equal(ends[0]!.connection, c.connection);
    assert.ok(ends[0]!.seq > starts[0]!.seq);
  }
  const ids = records.filter((r) => r.event === 'command_start').map((r) => r.command_id);
  assert.equal(new Set(ids).size, ids.length, 'command ids are unique');

  const verdict = await auditVerify(gw.auditPath);
  assert.equal(verdict.code, 0, verdict.stdout);
});

test('one bad device never slows the others: a silent sshd while 10 commands run elsewhere', async () => {
  let settledAt = 0;
  const silentStarted = Date.now();
  const silentCall = gw.client.callTool({ name: 'run_command', arguments: { connection: 'silent', command: 'echo never' } }).finally(() => {
    settledAt = Date.now();
  });
  await sleep(200); // the gateway is now stuck waiting for the silent device's banner

  const listStarted = Date.now();
  const during = await listConnections();
  assert.ok(Date.now() - listStarted < 2000, 'list_connections answers while a device hangs');
  assert.equal(during.get('silent')!.state, 'connecting');

  for (let i = 0; i < 10; i++) {
    const t = Date.now();
    const r = await callOk<CommandResult>(gw, 'run_command', { connection: 'c1', command: `echo good-${i}` });
    const took = Date.now() - t;
    assert.equal(r.stdout, `good-${i}\n`);
    assert.ok(took < 2000, `command ${i} on the good device took ${took} ms`);
  }
  assert.equal(settledAt, 0, 'all 10 good commands finished before the silent device timed out');

  const result = await silentCall;
  const waited = settledAt - silentStarted;
  assert.equal(result.isError, true);
  const text = (result.content as { text: string }[]).map((c) => c.text).join('\n');
  assert.match(text, /no SSH handshake from 127\.0\.0\.1:\d+ within 5 s for "silent"/);
  assert.ok(waited >= 4500 && waited < 9000, `silent device failed after ${waited} ms (connect_s 5)`);

  const after = (await listConnections()).get('silent')!;
  assert.equal(after.state, 'failing');
  assert.equal(after.failures, 1);
  assert.match(after.last_error ?? '', /no SSH handshake/);
  await assertServing('c1');
});

test('a host key that changes between calls is refused with the new fingerprint; the others keep serving', async () => {
  const first = await callOk<CommandResult>(gw, 'run_command', { connection: 'rotating', command: 'echo before' });
  assert.equal(first.stdout, 'before\n');

  // The device goes away; the call right after must see that (connection refused), not trip over the dead
  // warm connection ("Not connected").
  await rotating.kill();
  const gone = await callError(gw, 'run_command', { connection: 'rotating', command: 'echo gone' });
  assert.match(gone, /connection refused by 127\.0\.0\.1:\d+ for "rotating"/);

  // "Reinstall" the device: same port, same authorized client key, a brand new host key.
  const port = rotating.port;
  const oldFingerprint = rotating.hostKeyFingerprint;
  await rotating.stop();
  rotating = await Sshd.start({ port, clientKey });
  const newFingerprint = rotating.hostKeyFingerprint;
  assert.notEqual(newFingerprint, oldFingerprint);

  // No waiting: the warm connection died with the old sshd, and the very next call must reconnect and be refused.
  const refused = await callError(gw, 'run_command', { connection: 'rotating', command: 'echo after' });
  assert.match(refused, /host key mismatch for "rotating"/);
  assert.ok(refused.includes(newFingerprint), `the error shows the presented fingerprint ${newFingerprint}: ${refused}`);
  assert.ok(refused.includes(oldFingerprint), 'and the pinned one');
  assert.match(refused, /Refusing to connect/);
  assert.ok(refused.includes(`"host_key": "${newFingerprint}"`), 'and how to pin the new key');

  // Refused again (never silently accepted), and the rest of the fleet is unaffected.
  const again = await callError(gw, 'run_command', { connection: 'rotating', command: 'echo after' });
  assert.ok(again.includes(newFingerprint));
  await assertServing('c2');

  const records = await readAudit();
  const mismatch = records.filter((r) => r.event === 'host_key_mismatch' && r.connection === 'rotating');
  assert.ok(mismatch.length >= 1, 'host_key_mismatch is audited');
  assert.equal(mismatch[0]!.fingerprint, newFingerprint);
  assert.equal(
    records.filter((r) => r.event === 'command_start' && r.connection === 'rotating' && r.command === 'echo after').length,
    0,
    'nothing ran on the device with the wrong key',
  );
});

test('circuit breaker: opens after 2 failures, fails fast with a retry time, half-open probe recovers', async () => {
  const first = await callError(gw, 'run_command', { connection: 'breaker', command: 'echo x' });
  assert.match(first, /connection refused/);
  let view = (await listConnections()).get('breaker')!;
  assert.equal(view.state, 'failing');
  assert.equal(view.failures, 1);

  const second = await callError(gw, 'run_command', { connection: 'breaker', command: 'echo x' });
  assert.match(second, /connection refused/);
  view = (await listConnections()).get('breaker')!;
  assert.equal(view.state, 'circuit_open');
  assert.equal(view.failures, 2);
  assert.ok(view.circuit_retry_at, 'list_connections says when the circuit will let a probe through');
  const retryAt = Date.parse(view.circuit_retry_at!);
  assert.ok(retryAt > Date.now() && retryAt <= Date.now() + 2500, `retry at ${view.circuit_retry_at}`);

  const t = Date.now();
  const fast = await callError(gw, 'run_command', { connection: 'breaker', command: 'echo x' });
  const took = Date.now() - t;
  assert.ok(took < 1500, `an open circuit fails fast (took ${took} ms; connect timeout is 3 s)`);
  assert.match(fast, /failed 2 times in a row/);
  assert.ok(fast.includes(view.circuit_retry_at!), `the error names when it will be retried: ${fast}`);
  assert.equal((await listConnections()).get('breaker')!.failures, 2, 'a fast-failed call is not a new attempt');

  // After the cool-down one probe goes through; it fails (still down), so the circuit opens again at once.
  await sleep(Math.max(0, retryAt - Date.now()) + 100);
  const probe = await callError(gw, 'run_command', { connection: 'breaker', command: 'echo x' });
  assert.match(probe, /connection refused/, 'the half-open probe really tried the device');
  view = (await listConnections()).get('breaker')!;
  assert.equal(view.state, 'circuit_open', 'a failed probe re-opens the circuit');
  assert.equal(view.failures, 3);

  // The device comes back on its port; the next probe after the cool-down succeeds and closes the circuit.
  breakerSshd = await Sshd.start({ port: breakerPort, clientKey, hostKey: breakerHostKey });
  await sleep(Math.max(0, Date.parse(view.circuit_retry_at!) - Date.now()) + 100);
  const ok = await callOk<CommandResult>(gw, 'run_command', { connection: 'breaker', command: 'echo recovered' });
  assert.equal(ok.stdout, 'recovered\n');
  view = (await listConnections()).get('breaker')!;
  assert.equal(view.state, 'connected');
  assert.equal(view.failures, 0);
  assert.equal(view.circuit_retry_at, null);

  const records = await readAudit();
  const fails = records.filter((r) => r.event === 'ssh_fail' && r.connection === 'breaker');
  assert.equal(fails.length, 3, 'three real connection attempts failed (the fast-failed call made none)');
  assert.ok(records.some((r) => r.event === 'ssh_connect' && r.connection === 'breaker'));
  await assertServing('c3');
});

type Outcome = { kind: 'tool_error'; text: string } | { kind: 'jsonrpc_error'; code: number; message: string } | { kind: 'ok'; result: unknown };

async function attempt(name: string, args: unknown): Promise<Outcome> {
  try {
    const result = await gw.client.callTool({ name, arguments: args as Record<string, unknown> });
    if (result.isError) return { kind: 'tool_error', text: (result.content as { text: string }[]).map((c) => c.text).join('\n') };
    return { kind: 'ok', result: result.structuredContent };
  } catch (err) {
    const e = err as { code?: number; message?: string };
    return { kind: 'jsonrpc_error', code: e.code ?? 0, message: e.message ?? String(err) };
  }
}

test('malformed and oversize MCP input gets a clear error, and the gateway keeps serving', async () => {
  const cases: { name: string; tool: string; args: unknown; expect: RegExp }[] = [
    { name: 'wrong type', tool: 'run_command', args: { connection: 'c0', command: 42 }, expect: /command: .*expected string, received number/ },
    { name: 'missing command', tool: 'run_command', args: { connection: 'c0' }, expect: /command: .*expected string, received undefined/ },
    { name: 'missing connection', tool: 'run_command', args: { command: 'echo hi' }, expect: /connection: .*expected string, received undefined/ },
    { name: 'no arguments at all', tool: 'run_command', args: undefined, expect: /connection|command|expected object/i },
    { name: 'unknown extra field', tool: 'run_command', args: { connection: 'c0', command: 'echo hi', sudo_password: 'x' }, expect: /Unrecognized key: "sudo_password"/ },
    // 9 MB: just under the MCP SDK's 10 MiB stdio line limit, so it reaches the tool's input validation.
    { name: '9 MB command', tool: 'run_command', args: { connection: 'c0', command: 'x'.repeat(9 * 1024 * 1024) }, expect: /command: Too big: .*<=65536/ },
    { name: '9 MB stdin', tool: 'run_command', args: { connection: 'c0', command: 'cat', stdin: 'y'.repeat(9 * 1024 * 1024) }, expect: /stdin: Too big: .*<=8388608/ },
    { name: 'huge timeout_s', tool: 'run_command', args: { connection: 'c0', command: 'echo hi', timeout_s: 1e300 }, expect: /timeout_s: Too big: .*<=86400/ },
    { name: 'negative timeout_s', tool: 'run_command', args: { connection: 'c0', command: 'echo hi', timeout_s: -1 }, expect: /timeout_s: Too small/ },
    { name: 'env of the wrong shape', tool: 'run_command', args: { connection: 'c0', command: 'echo hi', env: ['A=1'] }, expect: /env: .*expected record, received array/ },
    { name: 'wrong type for list_connections', tool: 'list_connections', args: { tag: { $ne: 1 } }, expect: /tag: .*expected string, received object/ },
    { name: 'unknown tool', tool: 'rm_rf_everything', args: { connection: 'c0' }, expect: /Tool rm_rf_everything not found/ },
  ];
  const seen: string[] = [];
  for (const c of cases) {
    const outcome = await attempt(c.tool, c.args);
    assert.notEqual(outcome.kind, 'ok', `${c.name}: must be refused, got ${JSON.stringify(outcome).slice(0, 300)}`);
    const message = outcome.kind === 'tool_error' ? outcome.text : (outcome as { message: string }).message;
    seen.push(`${c.name}: ${outcome.kind}${outcome.kind === 'jsonrpc_error' ? ` ${outcome.code}` : ''}`);
    assert.match(message, c.expect, `${c.name}: the message names the problem: ${message.slice(0, 500)}`);
    assert.ok(message.length < 5000, `${c.name}: the error does not echo the oversize input back (${message.length} chars)`);
    if (c.tool === 'run_command') {
      // Invalid input is a tool error the agent can read and fix (the SDK validates before the handler runs).
      assert.equal(outcome.kind, 'tool_error', `${c.name}: ${JSON.stringify(outcome).slice(0, 300)}`);
    }
    assertAlive();
  }
  // Bad arguments are tool errors (isError, "Input validation error: ..."), which the agent sees and can fix; an
  // unknown tool is a JSON-RPC error (InvalidParams, -32602) because there is no tool to own the result.
  const unknown = await attempt('rm_rf_everything', {});
  assert.equal(unknown.kind, 'jsonrpc_error', JSON.stringify(unknown));
  assert.equal((unknown as { code: number }).code, -32602);

  // Nothing malformed reached a device.
  const records = await readAudit();
  assert.equal(records.filter((r) => r.event === 'command_start' && typeof r.command === 'string' && r.command.startsWith('xxxx')).length, 0);
  assert.equal(records.filter((r) => r.event === 'tool_call' && r.tool === 'rm_rf_everything').length, 0);

  await assertServing('c4');
  const listed = await listConnections();
  assert.equal(listed.size, POOL + 3);
  console.log(`malformed input outcomes: ${seen.join('; ')}`);
});

test('a 10 MB command string gets a clear error and the gateway keeps serving', async () => {
  // Its own gateway: a message this size is over the MCP SDK's 10 MiB stdio line limit, and if the gateway
  // mishandles it the shared gateway of the other tests must not go down with it.
  const own = await startGateway({ gateway: {}, connections: [directConnection(pool[0]!, 'solo')] }, { clientName: 'oversize-test' });
  try {
    const huge = 'x'.repeat(10 * 1024 * 1024);
    let outcome: string;
    try {
      const result = await own.client.callTool({ name: 'run_command', arguments: { connection: 'solo', command: huge } }, { timeout: 15_000 });
      outcome = result.isError ? `tool_error: ${(result.content as { text: string }[]).map((c) => c.text).join('\n')}` : 'ok';
    } catch (err) {
      outcome = `jsonrpc_error ${(err as { code?: number }).code}: ${(err as Error).message}`;
    }
    assert.ok(outcome.length < 5000, 'the error does not echo the input back');
    assert.match(
      outcome,
      /too (big|large|long)|exceeds|limit|<=65536/i,
      `a 10 MB command must be refused with an error that names the size problem, got: ${outcome.slice(0, 300)}`,
    );
    const pid = own.pid();
    assert.ok(pid);
    process.kill(pid, 0);
    const after = await own.client.callTool({ name: 'run_command', arguments: { connection: 'solo', command: 'echo still-here' } }, { timeout: 10_000 });
    assert.ok(!after.isError, JSON.stringify(after.content));
    assert.equal((after.structuredContent as CommandResult).stdout, 'still-here\n', 'the same session keeps serving after the oversize message');
  } finally {
    await own.close();
  }
});

test('garbage on the stdio transport is answered or ignored, and the same process keeps serving', async () => {
  // A raw process, so we can write bytes the SDK client would never send. Its own audit log: two gateways
  // must never append to one file.
  const rawConfig = path.join(keysDir, 'raw-connections.json');
  await writeFile(rawConfig, JSON.stringify({ gateway: { audit_log: path.join(keysDir, 'raw-audit.log') }, connections }));
  const child = spawn(process.execPath, [CLI, 'serve', '--config', rawConfig], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stderr.resume();
  const responses: Record<string, unknown>[] = [];
  let buffer = '';
  child.stdout.on('data', (d: Buffer) => {
    buffer += d.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim()) responses.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  const waitFor = async (id: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = responses.find((r) => r.id === id);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no response to id ${id}; got ${JSON.stringify(responses)}`);
      await sleep(20);
    }
  };
  const send = (value: unknown) => child.stdin.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`);
  try {
    send('this is not json {{{');
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } });
    const init = await waitFor(1);
    assert.ok(init.result, `initialize answered after a garbage line: ${JSON.stringify(init)}`);
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    // Not a valid JSON-RPC request (params must be an object): the MCP SDK drops such a line with a log entry
    // (it cannot be sure of the id); what matters here is that the process survives it.
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: 42 });
    // A valid request whose params are not a CallToolRequest: answered with an error for its id.
    send({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'run_command', arguments: 'rm -rf /' } });
    const bad = await waitFor(5);
    const badError = bad.error as { code: number; message: string } | undefined;
    assert.equal(badError?.code, -32602, `string arguments are refused as invalid params: ${JSON.stringify(bad)}`);
    assert.match(badError!.message, /arguments/, 'the error names the bad field');
    send({ jsonrpc: '2.0', id: 3, method: 'no/such/method', params: {} });
    const unknown = await waitFor(3);
    assert.equal((unknown.error as { code: number }).code, -32601, 'unknown method is JSON-RPC "method not found"');
    send({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'run_command', arguments: { connection: 'c5', command: 'echo raw-ok' } } });
    const good = await waitFor(4);
    const result = good.result as { isError?: boolean; structuredContent: CommandResult };
    assert.ok(!result.isError, JSON.stringify(good));
    assert.equal(result.structuredContent.stdout, 'raw-ok\n');
    assert.equal(child.exitCode, null, 'the process is still running');
    assert.equal((await auditVerify(path.join(keysDir, 'raw-audit.log'))).code, 0);
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await Promise.race([exited, sleep(5000)]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
});

test('after every fault the gateway is still up and the audit chain verifies', async () => {
  await assertServing('c9');
  const verdict = await auditVerify(gw.auditPath);
  assert.equal(verdict.code, 0, verdict.stdout);
  const records = await readAudit();
  assert.deepEqual(
    records.map((r) => r.seq),
    records.map((_, i) => i + 1),
  );
});
