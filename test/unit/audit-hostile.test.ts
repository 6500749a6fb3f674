// Hostile inputs to the audit layer (the review's findings, by class): redaction that hid what ran, refusals that
// flooded history out, lines that show one thing and hash another.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, redactFields, verifyAuditFiles } from '../../src/audit/index.js';
import { RefusalBudget, SHORT_FIELD_MAX, shortenAsked, type RefusalSummary } from '../../src/audit/refusals.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'audit-hostile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

// ---------------------------------------------------------------------------------------------
// redaction never hides what ran

const HOSTILE_COMMANDS = [
  'rm -rf /srv/data # -----BEGIN PRIVATE KEY-----',
  'echo "token=";touch /x;echo ""',
  'echo password=hunter2; curl https://admin:pw@example.com/ -H "Authorization: Bearer abcdefgh123"',
  'cat ~/.ssh/id_rsa # PuTTY-User-Key-File-2',
  'export API_KEY="x"; touch /etc/cron.d/evil; echo \'\'',
  'mysql --password "a;touch /y" -e "select 1"',
  'echo ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 > /tmp/t; reboot',
];

test('commands are recorded exactly, whatever secret-looking text they hold, in every event that names them', () => {
  for (const command of HOSTILE_COMMANDS) {
    for (const event of ['tool_call', 'command_start', 'command_end', 'approval_asked', 'approval_granted', 'policy_denial', 'approval_refused']) {
      const record = redactFields({ event, connection: 'edge', command, cwd: `/srv/token=${command}` });
      assert.equal(record.command, command, `${event}: ${command}`);
      assert.equal(record.cwd, `/srv/token=${command}`, `${event} cwd`);
    }
  }
});

test('paths and action params are kept exactly; fields named as secrets inside them are still redacted', () => {
  const path = '/etc/app/password=hunter2;token: x/-----BEGIN RSA PRIVATE KEY-----.conf';
  const record = redactFields({
    event: 'file_transfer',
    path,
    remote_path: path,
    resolved: path,
    local_path: path,
    real: path,
    paths: [path],
    action: 'restart token=x',
    params: { unit: 'nginx; echo secret=1', file: path, password: 'p4ss', nested: { api_token: 'zz', note: 'Bearer abcdefghij' } },
    content: 'file body',
  });
  assert.equal(record.path, path);
  assert.equal(record.remote_path, path);
  assert.equal(record.resolved, path);
  assert.equal(record.local_path, path);
  assert.equal(record.real, path);
  assert.deepEqual(record.paths, [path]);
  assert.equal(record.action, 'restart token=x');
  assert.deepEqual(record.params, { unit: 'nginx; echo secret=1', file: path, password: '[redacted]', nested: { api_token: '[redacted]', note: 'Bearer abcdefghij' } });
  assert.deepEqual(record.content, { bytes: 9 }, 'content is still only its size');
});

test('free text that is not what ran (errors, reasons) is still masked', () => {
  const record = redactFields({ event: 'ssh_fail', error: 'auth failed for password=hunter2', reason: 'x -----BEGIN OPENSSH PRIVATE KEY----- y', stdin: 'typed secret' });
  assert.equal(record.error, 'auth failed for password=[redacted]');
  assert.equal(record.reason, '[redacted]');
  assert.deepEqual(record.stdin, { bytes: 12 });
});

test('a command past 64 KiB keeps its exact start (no pattern applied) plus the size and sha256 of the whole', () => {
  const command = `echo token=abc; -----BEGIN PRIVATE KEY----- ${'y'.repeat(70_000)}`;
  const stored = String(redactFields({ event: 'command_start', command }).command);
  assert.ok(stored.startsWith('echo token=abc; -----BEGIN PRIVATE KEY----- yyy'), stored.slice(0, 80));
  assert.ok(stored.endsWith(`… [${Buffer.byteLength(command)} bytes in all, sha256 ${sha256(command)}]`));
  assert.equal(stored.indexOf('…'), 64 * 1024);
});

// ---------------------------------------------------------------------------------------------
// refusals can't push history out

const LONG = `echo ${'A'.repeat(60 * 1024)}; rm -rf /`;

test('refusal and tool_call records keep a short start of long fields, with their size and sha256', () => {
  const params = { blob: 'B'.repeat(5000) };
  for (const event of ['policy_denial', 'approval_refused', 'action_rejected', 'tool_call']) {
    const shortened = shortenAsked({ event, connection: 'edge', command: LONG, params, client: { transport: 'stdio' }, rule: 'deny rm' });
    const command = String(shortened.command);
    assert.ok(command.length < SHORT_FIELD_MAX, `${event}: ${command.length} chars`);
    assert.ok(command.startsWith('echo AAAA'));
    assert.ok(command.endsWith(`[${Buffer.byteLength(LONG)} bytes in all, sha256 ${sha256(LONG)}]`));
    assert.equal(typeof shortened.params, 'string');
    assert.match(String(shortened.params), /^\{"blob":"BBBB.*… \[5011 bytes in all, sha256 [0-9a-f]{64}\]$/);
    assert.deepEqual(shortened.client, { transport: 'stdio' });
    assert.equal(shortened.rule, 'deny rm');
  }
});

test('what ran and what was granted is never shortened, and short refusals are unchanged', () => {
  for (const event of ['command_start', 'command_end', 'approval_granted', 'approval_asked', 'file_transfer']) {
    const event_ = { event, command: LONG, params: { blob: 'B'.repeat(5000) } };
    assert.deepEqual(shortenAsked(event_), event_, event);
  }
  const short = { event: 'policy_denial', command: 'rm -rf /', client: 'stdio' };
  assert.deepEqual(shortenAsked(short), short);
});

test('each principal has its own refusal budget; held-back refusals are summarised; other events always pass', () => {
  const summaries: RefusalSummary[] = [];
  const budget = new RefusalBudget(3, 60_000, (s) => summaries.push(s));
  const alice = { transport: 'http', principal: 'alice' };
  const bob = { transport: 'http', principal: 'bob' };
  const admitted = (client: unknown, event = 'policy_denial') => budget.admit({ event, client, command: 'x' });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => admitted(alice)), [true, true, true, false, false]);
  assert.equal(admitted(alice, 'approval_refused'), false);
  assert.equal(admitted({ ...alice, client_name: 'renamed' }), false, 'a new client name is the same principal');
  assert.equal(admitted(bob), true, "alice's flood does not use bob's budget");
  for (const event of ['command_start', 'approval_granted', 'tool_call', 'command_end']) assert.equal(admitted(alice, event), true, event);
  budget.flush();
  assert.deepEqual(summaries, [{ principal: 'http:alice', counts: { policy_denial: 3, approval_refused: 1 }, window_s: 60 }]);
  assert.equal(admitted(alice), true, 'a new window starts afresh');
  budget.flush();
});

test('a flood of refused 60 KiB commands writes bounded records, and every command that ran is kept whole', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const log = await AuditLog.open(path, { fsync: 'never' });
  const budget = new RefusalBudget(20, 60_000, (s) => void log.append({ event: 'refusals_suppressed', client: s.principal, counts: s.counts, window_s: s.window_s }));
  const record = async (event: { event: string; [field: string]: unknown }) => {
    if (budget.admit(event)) await log.append(shortenAsked(event));
  };
  const client = { transport: 'stdio', client_name: 'agent' };
  for (let i = 0; i < 1000; i += 1) {
    await record({ event: 'tool_call', tool: 'run_command', client, connection: 'edge', command: `${LONG} #${i}` });
    await record({ event: 'policy_denial', client, connection: 'edge', command: `${LONG} #${i}`, rule: 'deny', reason: 'matches deny' });
  }
  await record({ event: 'command_start', client, connection: 'edge', command: LONG });
  budget.flush();
  await log.close();
  const lines = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  const longest = Math.max(...lines.filter((_, i) => records[i]!.event !== 'command_start').map((line) => line.length));
  assert.ok(longest < 2048, `a refusal or tool_call line is ${longest} bytes`);
  assert.equal(records.filter((r) => r.event === 'policy_denial').length, 20);
  assert.deepEqual(records.find((r) => r.event === 'refusals_suppressed')?.counts, { policy_denial: 980 });
  assert.equal(records.find((r) => r.event === 'command_start')?.command, LONG, 'the command that ran is whole');
  assert.ok((await stat(path)).size < 1000 * 2048 + 2 * LONG.length, `${(await stat(path)).size} bytes for 1000 refusals`);
  assert.ok((await verifyAuditFiles([path])).ok);
});

// ---------------------------------------------------------------------------------------------
// byte-exact lines

async function writeThree(dir: string): Promise<{ path: string; lines: string[] }> {
  const path = join(dir, 'audit.log');
  const log = await AuditLog.open(path);
  await log.append({ event: 'command_start', connection: 'edge', command: 'ls /' });
  await log.append({ event: 'command_start', connection: 'edge', command: 'uptime' });
  await log.append({ event: 'command_end', connection: 'edge', exit_code: 0 });
  await log.close();
  return { path, lines: (await readFile(path, 'utf8')).split('\n').filter(Boolean) };
}

test('verify fails on a line that parses to a genuine record but is not its exact serialization, naming the line', async (t) => {
  const { path, lines } = await writeThree(await tempDir(t));
  const edits: [string, (line: string) => string][] = [
    ['duplicate key planted before the real one', (line) => line.replace('"command":"uptime"', '"command":"rm -rf /","command":"uptime"')],
    ['duplicate key planted after the real one, same value', (line) => line.replace('"command":"uptime"', '"command":"uptime","command":"uptime"')],
    ['duplicate of a chain field', (line) => line.replace('"seq":2,', '"seq":99,"seq":2,')],
    ['spacing', (line) => line.replace('"command":"uptime"', '"command": "uptime"')],
    ['escaped the same text differently', (line) => line.replace('"command":"uptime"', '"command":"\\u0075ptime"')],
  ];
  for (const [name, edit] of edits) {
    const edited = edit(lines[1]!);
    assert.notEqual(edited, lines[1], name);
    await writeFile(path, [lines[0], edited, lines[2]].map((l) => `${l}\n`).join(''));
    const result = await verifyAuditFiles([path]);
    assert.equal(result.ok, false, `${name} was not caught`);
    if (result.ok) continue;
    assert.equal(result.line, 2, `${name}: ${result.reason}`);
    assert.match(result.reason, /line 2 of audit\.log \(seq 2\) is not byte for byte the record it parses to/, name);
  }
  await writeFile(path, lines.map((l) => `${l}\n`).join(''));
  assert.ok((await verifyAuditFiles([path])).ok, 'the untouched lines verify');
});

test('the writer refuses to continue a chain whose last line has a planted duplicate key', async (t) => {
  const { path, lines } = await writeThree(await tempDir(t));
  await writeFile(path, [lines[0], lines[1], lines[2]!.replace('"exit_code":0', '"exit_code":1,"exit_code":0')].map((l) => `${l}\n`).join(''));
  await assert.rejects(AuditLog.open(path), /not exactly the record it parses to/);
});
