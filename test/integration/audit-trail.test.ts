// The audit trail end to end (issue 6): a real OpenSSH sshd as the device, the built CLI `serve` as the gateway,
// the real MCP SDK client. Checks what the log records, what it must never record, that the chain survives a
// restart, that `audit verify` catches each kind of tampering, and that get_history reads it back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Sshd } from '../helpers/sshd.js';
import { CLI, directConnection } from '../helpers/gateway.js';
import { computeRecordHash } from '../../src/audit/index.js';

type AuditRecord = { seq: number; ts: string; event: string; prev: string; hash: string; [field: string]: unknown };
type Caller = { transport?: string; client_name?: string; client_version?: string };

const CLIENT_NAME = 'audit-trail-agent';
const CLIENT_VERSION = '7.7.7';

// Markers that must never reach the audit file: stdin text, an env value, command output.
const tag = randomBytes(8).toString('hex');
const STDIN_SECRET = `stdin-password-${tag}`;
const ENV_SECRET = `envtoken${tag}`;
const OUT_LEFT = `OUTMARK${tag.slice(0, 8)}`;
const OUT_RIGHT = `Z${tag.slice(8)}`;
const OUTPUT_MARKER = `${OUT_LEFT}${OUT_RIGHT}`; // produced on the device; the command line holds it only in two parts

let sshd: Sshd;
let dir: string;
let configPath: string;
let auditPath: string;
let configText: string;
const open: { client: Client; transport: StdioClientTransport }[] = [];

before(async () => {
  sshd = await Sshd.start();
  dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-audit-'));
  configPath = path.join(dir, 'connections.json');
  auditPath = path.join(dir, 'audit.log'); // no gateway.audit_log: the default is beside the config
  configText = JSON.stringify({ gateway: {}, connections: [directConnection(sshd, 'dev1')] }, null, 2);
  await writeFile(configPath, configText);
});

after(async () => {
  for (const { client } of open) await client.close().catch(() => undefined);
  await sshd?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** `serve` on the one config file (so a restart really is the same config), with our client identity. */
async function serve(): Promise<{ client: Client; transport: StdioClientTransport; stderr: () => string; close: () => Promise<void> }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--config', configPath],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString())); // kept, not shown
  const client = new Client({ name: CLIENT_NAME, version: CLIENT_VERSION }, { capabilities: {} });
  await client.connect(transport);
  const entry = { client, transport };
  open.push(entry);
  return {
    client,
    transport,
    stderr: () => stderr,
    close: async () => {
      const pid = transport.pid;
      await client.close();
      open.splice(open.indexOf(entry), 1);
      // The next gateway must not open the log while this one may still append gateway_stop.
      if (pid) await waitForExit(pid);
    },
  };
}

async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`gateway pid ${pid} still running`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function call(client: Client, name: string, args: Record<string, unknown>) {
  return client.callTool({ name, arguments: args });
}

async function ok<T = Record<string, unknown>>(client: Client, name: string, args: Record<string, unknown>): Promise<T> {
  const result = await call(client, name, args);
  assert.ok(!result.isError, `${name} failed: ${JSON.stringify(result.content)}`);
  return result.structuredContent as T;
}

function textOf(result: { content?: unknown }): string {
  return ((result.content ?? []) as { type: string; text?: string }[]).map((c) => c.text ?? '').join('\n');
}

async function readRecords(file = auditPath): Promise<AuditRecord[]> {
  const text = await readFile(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'the audit log ends on a record boundary');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as AuditRecord);
}

function verify(file: string, ...extra: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, 'audit', 'verify', file, ...extra],
      { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

function commandPairs(records: AuditRecord[]): { start: AuditRecord; end: AuditRecord }[] {
  const ends = new Map(records.filter((r) => r.event === 'command_end').map((r) => [r.command_id, r]));
  return records
    .filter((r) => r.event === 'command_start')
    .map((start) => {
      const end = ends.get(start.command_id);
      assert.ok(end, `command_end for ${String(start.command)}`);
      return { start, end };
    });
}

let firstRun: AuditRecord[] = [];

test('a session is audited: start, config, tool calls with client identity, commands, ssh connect', async () => {
  const gw = await serve();
  const listed = await ok<{ connections: { name: string }[] }>(gw.client, 'list_connections', {});
  assert.deepEqual(
    listed.connections.map((c) => c.name),
    ['dev1'],
  );

  const hello = await ok<{ exit_code: number; stdout: string }>(gw.client, 'run_command', { connection: 'dev1', command: 'echo hello' });
  assert.equal(hello.exit_code, 0);
  assert.equal(hello.stdout, 'hello\n');

  const failing = await ok<{ exit_code: number; stderr: string }>(gw.client, 'run_command', { connection: 'dev1', command: 'echo oops >&2; exit 3' });
  assert.equal(failing.exit_code, 3, 'a non-zero exit is data, not a tool error');
  assert.equal(failing.stderr, 'oops\n');

  const secretCommand = `cat; printf '%s\\n' "$API_TOKEN"; printf '%s%s\\n' ${OUT_LEFT} ${OUT_RIGHT}`;
  const secret = await ok<{ exit_code: number; stdout: string }>(gw.client, 'run_command', {
    connection: 'dev1',
    command: secretCommand,
    stdin: `${STDIN_SECRET}\n`,
    env: { API_TOKEN: ENV_SECRET },
  });
  assert.equal(secret.exit_code, 0);
  assert.equal(secret.stdout, `${STDIN_SECRET}\n${ENV_SECRET}\n${OUTPUT_MARKER}\n`, 'the device saw stdin and env, and produced the marker');

  const unknown = await call(gw.client, 'run_command', { connection: 'nope', command: 'echo never' });
  assert.equal(unknown.isError, true);
  assert.match(textOf(unknown), /unknown connection "nope"/);
  assert.match(textOf(unknown), /dev1/, 'the error names the known connections');

  await gw.close();

  const records = await readRecords();
  firstRun = records;
  const events = records.map((r) => r.event);
  assert.equal(events[0], 'gateway_start');
  assert.equal(events[1], 'config_loaded');
  assert.equal(events.at(-1), 'gateway_stop', 'a clean shutdown is recorded, as the last record');
  assert.equal(events.at(-2), 'ssh_disconnect', 'the warm connection is closed and recorded before gateway_stop');
  assert.deepEqual(
    records.map((r) => r.seq),
    records.map((_, i) => i + 1),
    'seq starts at 1 with no gaps',
  );
  for (const r of records) assert.match(r.hash, /^[0-9a-f]{64}$/);

  const config = records[1]!;
  assert.equal(config.sha256, createHash('sha256').update(configText).digest('hex'), 'config_loaded carries the sha256 of the config file');

  const connects = records.filter((r) => r.event === 'ssh_connect');
  assert.equal(connects.length, 1, 'one warm connection served every command');
  assert.equal(connects[0]!.connection, 'dev1');
  assert.equal(connects[0]!.host_key, sshd.hostKeyFingerprint, 'ssh_connect records the verified host key');

  const toolCalls = records.filter((r) => r.event === 'tool_call');
  assert.deepEqual(
    toolCalls.map((r) => r.tool),
    ['list_connections', 'run_command', 'run_command', 'run_command', 'run_command'],
  );
  for (const r of toolCalls) {
    const who = r.client as Caller;
    assert.equal(who.client_name, CLIENT_NAME, 'every tool call names the MCP client');
    assert.equal(who.client_version, CLIENT_VERSION);
    assert.equal(who.transport, 'stdio');
  }
  const unknownCall = toolCalls.find((r) => r.connection === 'nope');
  assert.ok(unknownCall, 'the call to an unknown connection is audited too');
  const secretCall = toolCalls.find((r) => r.command === secretCommand)!;
  assert.deepEqual(secretCall.env_names, ['API_TOKEN'], 'env names are recorded, not values');
  assert.equal(secretCall.stdin_bytes, Buffer.byteLength(`${STDIN_SECRET}\n`), 'stdin is recorded as a byte count');

  const pairs = commandPairs(records);
  assert.deepEqual(
    pairs.map((p) => p.start.command),
    ['echo hello', 'echo oops >&2; exit 3', secretCommand],
    'one command_start per command that ran; none for the unknown connection',
  );
  for (const { start, end } of pairs) {
    assert.equal(start.connection, 'dev1');
    assert.equal((start.client as Caller).client_name, CLIENT_NAME);
    assert.ok(end.seq > start.seq);
    assert.equal(typeof end.duration_ms, 'number');
    assert.ok((end.duration_ms as number) >= 0);
    assert.equal(typeof end.stdout_bytes, 'number');
    assert.equal(typeof end.stderr_bytes, 'number');
  }
  assert.equal(pairs[0]!.end.exit_code, 0);
  assert.equal(pairs[0]!.end.stdout_bytes, 6);
  assert.equal(pairs[0]!.end.stderr_bytes, 0);
  assert.equal(pairs[1]!.end.exit_code, 3);
  assert.equal(pairs[1]!.end.stdout_bytes, 0);
  assert.equal(pairs[1]!.end.stderr_bytes, 5);
  assert.equal(pairs[2]!.end.exit_code, 0);
  assert.equal(pairs[2]!.end.stdout_bytes, Buffer.byteLength(secret.stdout));
  assert.deepEqual(pairs[2]!.start.env_names, ['API_TOKEN']);

  const verdict = await verify(auditPath);
  assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
  assert.match(verdict.stdout, new RegExp(`ok: ${records.length} record`));
});

test('the raw audit file never holds stdin text, env values or command output', async () => {
  const raw = await readFile(auditPath);
  for (const marker of [STDIN_SECRET, ENV_SECRET, OUTPUT_MARKER, 'hello\n', 'oops']) {
    if (marker === 'oops') {
      // "oops" is part of a recorded command line; its *output* line must not appear as a field value.
      assert.ok(!raw.includes('"oops\\n"'), 'stderr text of a command is not recorded');
      continue;
    }
    assert.equal(raw.includes(marker), false, `audit file contains ${JSON.stringify(marker)}`);
  }
  // And not hidden in another encoding either.
  for (const marker of [STDIN_SECRET, ENV_SECRET, OUTPUT_MARKER]) {
    assert.equal(raw.includes(Buffer.from(marker).toString('base64').slice(0, 16)), false, `base64 of ${marker} in audit file`);
    assert.equal(raw.includes(Buffer.from(marker).toString('hex')), false, `hex of ${marker} in audit file`);
  }
});

test('get_history returns the recent commands on a connection with their exit codes', async () => {
  const gw = await serve();
  try {
    await ok(gw.client, 'run_command', { connection: 'dev1', command: 'exit 7' });
    const history = await ok<{ entries: { seq: number; event: string; connection?: string; command?: string; exit_code?: number | null; client?: unknown }[] }>(
      gw.client,
      'get_history',
      { connection: 'dev1', limit: 50 },
    );
    const entries = history.entries;
    assert.ok(entries.length > 0);
    for (let i = 1; i < entries.length; i++) assert.ok(entries[i]!.seq > entries[i - 1]!.seq, 'oldest first, newest last');
    assert.ok(entries.every((e) => e.connection === 'dev1'), 'only the asked connection');
    const started = entries.filter((e) => e.event === 'command_start').map((e) => e.command);
    assert.deepEqual(started.slice(-4), ['echo hello', 'echo oops >&2; exit 3', started.at(-2), 'exit 7']);
    const ends = entries.filter((e) => e.event === 'command_end');
    assert.deepEqual(
      ends.slice(-4).map((e) => [e.command, e.exit_code]),
      [
        ['echo hello', 0],
        ['echo oops >&2; exit 3', 3],
        [started.at(-2), 0],
        ['exit 7', 7],
      ],
      'each finished command with its exit code, across both gateway runs, newest last',
    );
    const starts = entries.filter((e) => e.event === 'command_start');
    assert.equal((starts.at(-1)!.client as Caller).client_name, CLIENT_NAME, 'who ran it');
    // The summary an agent reads pairs each finished command with its exit code.
    const result = await call(gw.client, 'get_history', { connection: 'dev1', limit: 3 });
    assert.match(textOf(result), /exit 7/);
    const limited = (result.structuredContent as { entries: unknown[] }).entries;
    assert.equal(limited.length, 3, 'limit is honoured');

    const bad = await call(gw.client, 'get_history', { connection: 'nope' });
    assert.equal(bad.isError, true);
    assert.match(textOf(bad), /unknown connection "nope"/);
  } finally {
    await gw.close();
  }
});

test('a restart on the same config continues the chain, and it still verifies', async () => {
  const before = await readRecords();
  assert.ok(before.length > firstRun.length, 'the get_history run already appended to the same file');
  const gw = await serve();
  await ok(gw.client, 'run_command', { connection: 'dev1', command: 'echo again' });
  await gw.close();

  const records = await readRecords();
  assert.deepEqual(
    records.map((r) => r.seq),
    records.map((_, i) => i + 1),
    'seq keeps increasing by one across restarts',
  );
  for (let i = 1; i < records.length; i++) assert.equal(records[i]!.prev, records[i - 1]!.hash, `record ${records[i]!.seq} links to its predecessor`);
  const starts = records.filter((r) => r.event === 'gateway_start');
  assert.equal(starts.length, 3, 'three gateway runs in one log');
  const restart = records[before.length]!;
  assert.equal(restart.event, 'gateway_start');
  assert.equal(restart.seq, before.at(-1)!.seq + 1);
  assert.equal(restart.prev, before.at(-1)!.hash, 'the new run chains onto the last record of the previous run');
  const shas = new Set(records.filter((r) => r.event === 'config_loaded').map((r) => r.sha256));
  assert.equal(shas.size, 1, 'same config, same sha256');

  const verdict = await verify(auditPath);
  assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
  // The stopping gateway noted the head for the operator's own logs; verify prints the same one.
  const head = `${records.at(-1)!.seq}:${records.at(-1)!.hash}`;
  assert.ok(gw.stderr().includes(`audit log head ${head}; "mcp-ssh-gateway audit verify ${auditPath} --head ${head}"`), gw.stderr());
  assert.ok(verdict.stdout.includes(`head: ${head} (keep it elsewhere`), verdict.stdout);
});

test('a head noted earlier catches what the chain alone cannot: records cut from the end, a rewritten chain', async () => {
  const lines = (await readFile(auditPath, 'utf8')).split('\n').slice(0, -1);
  const records = lines.map((l) => JSON.parse(l) as AuditRecord);
  const head = `${records.at(-1)!.seq}:${records.at(-1)!.hash}`;
  const intact = await verify(auditPath, '--head', head);
  assert.equal(intact.code, 0, intact.stdout);
  assert.match(intact.stdout, /still has the hash noted for it/);

  // The last three records cut off cleanly: still a valid chain on its own.
  const cut = path.join(dir, 'cut-end.log');
  await writeFile(cut, `${lines.slice(0, -3).join('\n')}\n`);
  assert.equal((await verify(cut)).code, 0, 'the chain alone cannot see it');
  const cutVerdict = await verify(cut, '--head', head);
  assert.equal(cutVerdict.code, 1);
  assert.match(cutVerdict.stdout, new RegExp(`^TAMPERED: .*the log ends at seq ${records.at(-4)!.seq}, but the anchor names seq ${records.at(-1)!.seq}: records were cut from the end`));

  // Every record re-hashed after hiding a failure: a consistent forgery, caught only by the anchor.
  const forged: Record<string, unknown>[] = [];
  for (const record of records) {
    const copy: Record<string, unknown> = { ...record, prev: forged.at(-1)?.hash ?? record.prev };
    if (copy.event === 'command_end' && copy.exit_code === 3) copy.exit_code = 0;
    delete copy.hash;
    copy.hash = computeRecordHash(copy);
    forged.push(copy);
  }
  assert.ok(forged.some((r, i) => r.exit_code !== records[i]!.exit_code), 'a failure was hidden');
  const rewritten = path.join(dir, 'rewritten.log');
  await writeFile(rewritten, forged.map((r) => `${JSON.stringify(r)}\n`).join(''));
  assert.equal((await verify(rewritten)).code, 0, 'the chain alone cannot see it');
  const forgedVerdict = await verify(rewritten, '--head', head);
  assert.equal(forgedVerdict.code, 1);
  assert.match(forgedVerdict.stdout, /the chain was rewritten at or before seq/);

  const bad = await verify(auditPath, '--head', 'latest');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--head expects SEQ:HASH/);
});

test('audit verify catches every kind of tampering and names the bad record', async () => {
  const original = await readFile(auditPath, 'utf8');
  const lines = original.split('\n').slice(0, -1); // the file ends with "\n"
  const records = lines.map((l) => JSON.parse(l) as AuditRecord);
  const failIndex = records.findIndex((r) => r.event === 'command_end' && r.exit_code === 3);
  assert.ok(failIndex > 2);

  const cases: { name: string; lines: string[]; raw?: string; expect: RegExp }[] = [];

  // Edit one field (hide the failure), keeping its old hash.
  const edited = [...lines];
  edited[failIndex] = edited[failIndex]!.replace('"exit_code":3', '"exit_code":0');
  assert.notEqual(edited[failIndex], lines[failIndex]);
  cases.push({ name: 'edited field', lines: edited, expect: new RegExp(`seq ${records[failIndex]!.seq}\\b[\\s\\S]*(hash mismatch|edited)`) });

  // Edit and re-hash the record: the next record's "prev" no longer matches.
  const rehashed = [...lines];
  {
    const r = { ...records[failIndex]!, exit_code: 0 } as Record<string, unknown>;
    delete r.hash;
    const canonical = (v: unknown): string =>
      Array.isArray(v)
        ? `[${v.map(canonical).join(',')}]`
        : v !== null && typeof v === 'object'
          ? `{${Object.keys(v)
              .sort()
              .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
              .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
              .join(',')}}`
          : JSON.stringify(v);
    r.hash = createHash('sha256').update(canonical(r)).digest('hex');
    rehashed[failIndex] = JSON.stringify(r);
  }
  cases.push({ name: 'edited and re-hashed', lines: rehashed, expect: new RegExp(`seq ${records[failIndex + 1]!.seq}\\b[\\s\\S]*prev`) });

  // Delete a line from the middle.
  const deleted = lines.filter((_, i) => i !== failIndex);
  cases.push({ name: 'deleted line', lines: deleted, expect: new RegExp(`seq ${records[failIndex]!.seq}\\b[\\s\\S]*removed`) });

  // Swap two neighbouring lines.
  const swapped = [...lines];
  [swapped[failIndex], swapped[failIndex + 1]] = [swapped[failIndex + 1]!, swapped[failIndex]!];
  cases.push({ name: 'swapped lines', lines: swapped, expect: /reordered|out of order/ });

  // Truncate the last line (a cut-short write or a chopped file).
  const last = lines.at(-1)!;
  cases.push({
    name: 'truncated last line',
    lines: [],
    raw: `${lines.slice(0, -1).join('\n')}\n${last.slice(0, Math.floor(last.length / 2))}`,
    expect: new RegExp(`line ${lines.length}\\b[\\s\\S]*(cut short|truncated)`),
  });

  for (const c of cases) {
    const file = path.join(dir, `tampered-${c.name.replace(/\W+/g, '-')}.log`);
    await writeFile(file, c.raw ?? `${c.lines.join('\n')}\n`);
    const verdict = await verify(file);
    assert.equal(verdict.code, 1, `${c.name}: audit verify must exit 1, got ${verdict.code}: ${verdict.stdout}${verdict.stderr}`);
    assert.match(verdict.stdout, /^TAMPERED: /, c.name);
    assert.match(verdict.stdout, c.expect, `${c.name}: ${verdict.stdout}`);
    console.log(`${c.name} → ${verdict.stdout.trim()}`);
  }

  // Deleting the very first record: the chain itself cannot prove nothing was cut from its start (rotation
  // drops old files by design, see src/audit/verify.ts), but verify must not hide it: either it fails, or the
  // seq range it reports visibly starts after 1.
  {
    const file = path.join(dir, 'tampered-deleted-first-line.log');
    await writeFile(file, `${lines.slice(1).join('\n')}\n`);
    const verdict = await verify(file);
    if (verdict.code === 0) assert.match(verdict.stdout, /\(seq 2–/, verdict.stdout);
    else assert.match(verdict.stdout, /^TAMPERED: [\s\S]*seq 2\b/, verdict.stdout);
  }

  // The untouched original still verifies (the copies were separate files).
  assert.equal((await verify(auditPath)).code, 0);
});
