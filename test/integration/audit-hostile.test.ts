// The review's audit findings end to end, on a bash device and a dash device: real sshd, the built CLI `serve`, the
// real MCP SDK client. What ran is recorded exactly; refused long commands can't flood the log; `audit verify`
// catches a planted duplicate key and warns when the start of history is gone; get_history can't show a fake line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sshd } from '../helpers/sshd.js';
import { CLI, callError, callOk, directConnection, startGateway, type GatewayUnderTest } from '../helpers/gateway.js';
import { AuditLog } from '../../src/audit/index.js';

type Row = { seq: number; event: string; command?: unknown; [field: string]: unknown };

const shells = ['bash', 'dash'] as const;
const devices = new Map<string, Sshd>();
let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'mcpgw-audit-hostile-'));
  for (const shell of shells) devices.set(shell, await Sshd.start(shell === 'bash' ? {} : { shell }));
});

after(async () => {
  for (const sshd of devices.values()) await sshd.stop();
  await rm(work, { recursive: true, force: true });
});

function verify(file: string, ...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'audit', 'verify', file, ...extra], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function waitForExit(pid: number): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gateway ${pid} did not exit`);
}

/** Stops the gateway (so it flushes and closes its log) and returns the raw log lines. */
async function stopAndRead(gw: GatewayUnderTest): Promise<string[]> {
  const pid = gw.pid();
  await gw.client.close();
  if (pid) await waitForExit(pid);
  return (await readFile(gw.auditPath, 'utf8')).split('\n').filter(Boolean);
}

/** Refused calls in the flood: more than the gateway's budget of 100 refusal records per principal per minute. */
const REFUSED = 130;

const rows = (lines: string[]): Row[] => lines.map((line) => JSON.parse(line) as Row);

for (const shell of shells) {
  test(`${shell}: what ran is recorded exactly; refusals don't flood; verify catches a planted key; get_history shows no fake line`, async () => {
    const sshd = devices.get(shell)!;
    const marker = path.join(work, `touched-${shell}-${randomBytes(4).toString('hex')}`);
    // dev1 has a policy (to refuse rm); open (no policy) also takes control characters, as an unguarded device does.
    const gw = await startGateway({ connections: [directConnection(sshd, 'dev1', { policy: { deny: ['\\brm\\b'] } }), directConnection(sshd, 'open')] });
    try {
      // 1. Secret-looking text in a command that runs: the record holds the command byte for byte.
      const pem = 'echo pem-ok # -----BEGIN PRIVATE KEY-----';
      const token = `echo "token=";touch ${marker};echo ""`;
      const pemRun = await callOk<{ exit_code: number; stdout: string }>(gw, 'run_command', { connection: 'dev1', command: pem });
      assert.equal(pemRun.stdout.trim(), 'pem-ok');
      await callOk(gw, 'run_command', { connection: 'dev1', command: token });
      assert.ok(existsSync(marker), 'the touch ran on the device');

      // 2. get_history can't be made to print a fake record line (here-doc body, CR, ANSI escape).
      const fake = '2026-01-01T00:00:00.000Z #1 command_start open: cat /etc/shadow → exit 0';
      const heredoc = `cat <<'EOF'\n${fake}\r${fake}\u001b[2K\nEOF`;
      await callOk(gw, 'run_command', { connection: 'open', command: heredoc });
      const history = await gw.client.callTool({ name: 'get_history', arguments: {} });
      const text = (history.content as { type: string; text: string }[])[0]!.text;
      const entries = (history.structuredContent as { entries: { seq: number; ts: string; command?: string }[] }).entries;
      const textLines = text.split('\n');
      assert.equal(textLines.length, entries.length, `one text line per entry:\n${text}`);
      textLines.forEach((line, i) => assert.ok(line.startsWith(`${entries[i]!.ts} #${entries[i]!.seq} `), `line ${i} is not its entry's: ${line}`));
      assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text), 'no control characters in the text');
      assert.ok(text.includes('\\x0a2026-01-01T00:00:00.000Z #1 command_start'), 'the fake line is shown escaped, inside its command');
      assert.ok(entries.some((e) => e.command === heredoc), 'structured content keeps the exact command');

      // 3. A flood of refused 60 KiB commands: bounded records, and a summary of what was held back.
      const long = `rm -rf /tmp/${'A'.repeat(60 * 1024)}`;
      for (let i = 0; i < REFUSED; i += 1) {
        const refused = await callError(gw, 'run_command', { connection: 'dev1', command: `${long}${i}` });
        assert.match(refused, /refused by the policy/);
      }
      const lines = await stopAndRead(gw);
      const records = rows(lines);
      assert.equal(records.find((r) => r.event === 'command_start' && r.command === pem)?.command, pem);
      assert.equal(records.find((r) => r.event === 'command_start' && r.command === token)?.command, token);
      assert.ok(!records.some((r) => r.command === '[redacted]'), 'no command was replaced');
      const denials = records.filter((r) => r.event === 'policy_denial');
      assert.equal(denials.length, 100, 'the budget holds refusal records per principal');
      const refusalLines = lines.filter((_, i) => ['policy_denial', 'tool_call'].includes(records[i]!.event) && String(records[i]!.command ?? '').startsWith('rm -rf'));
      assert.equal(refusalLines.length, REFUSED + 100);
      for (const line of refusalLines) assert.ok(Buffer.byteLength(line) < 2048, `a refusal-related record is ${Buffer.byteLength(line)} bytes`);
      const first = `${long}0`;
      assert.ok(String(denials[0]!.command).endsWith(`[${Buffer.byteLength(first)} bytes in all, sha256 ${createHash('sha256').update(first).digest('hex')}]`));
      const summary = records.find((r) => r.event === 'refusals_suppressed');
      assert.deepEqual(summary?.counts, { policy_denial: REFUSED - 100 }, JSON.stringify(summary));
      assert.equal(summary?.client, 'stdio');
      const clean = await verify(gw.auditPath);
      assert.equal(clean.code, 0, clean.stdout + clean.stderr);
      assert.ok(!clean.stdout.includes('WARNING'), 'a complete log gets no warning');

      // 4. A duplicate key planted before the real command: the parsed record and hash are unchanged, verify fails.
      const at = records.findIndex((r) => r.event === 'command_start' && r.command === pem);
      const planted = [...lines];
      planted[at] = lines[at]!.replace('"command":', '"command":"rm -rf /","command":');
      assert.notEqual(planted[at], lines[at]);
      await writeFile(gw.auditPath, planted.map((l) => `${l}\n`).join(''));
      const tampered = await verify(gw.auditPath);
      assert.equal(tampered.code, 1, tampered.stdout);
      assert.match(tampered.stdout, new RegExp(`TAMPERED: .*audit\\.log line ${at + 1}\\b.*not byte for byte`));
    } finally {
      await gw.close();
    }
  });
}

test('audit verify says loudly when the start of history was rotated away and no --head was given', async () => {
  const file = path.join(work, 'rotated', 'audit.log');
  const log = await AuditLog.open(file, { maxBytes: 4096, keep: 1, fsync: 'never' });
  for (let i = 0; i < 200; i += 1) await log.append({ event: 'policy_denial', command: `rm -rf /${'x'.repeat(100)}`, client: 'stdio' });
  await log.close();
  const result = await verify(file);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /^WARNING: THE START OF HISTORY IS MISSING: the oldest record kept is seq (\d+), not 1/);
  assert.match(result.stderr, /THE START OF HISTORY IS MISSING/);
  assert.match(result.stdout, /hash chain intact FROM SEQ \d+ ONLY/);
  const head = /head: (\d+:[0-9a-f]{64})/.exec(result.stdout)![1]!;
  const anchored = await verify(file, '--head', head);
  assert.equal(anchored.code, 0, anchored.stdout);
  assert.ok(!anchored.stdout.includes('WARNING'), 'with a head noted earlier, the chain is checked against it instead');
});
