// run_command end to end: the real MCP client over stdio → the built gateway → ssh2 → a real OpenSSH sshd on
// loopback. The "device" is this machine, so the tests can look at its processes directly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { Sshd } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';

const run = promisify(execFile);

interface CommandResult {
  connection: string;
  exit_code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  stdout_total_bytes: number;
  stderr_total_bytes: number;
  encoding: 'utf8' | 'base64';
  stdout_invalid_utf8: boolean;
  stderr_invalid_utf8: boolean;
  duration_ms: number;
  timed_out: boolean;
  cancelled: boolean;
}

interface ConnectionView {
  name: string;
  state: string;
}

let sshd: Sshd;
let gw: GatewayUnderTest;

before(async () => {
  sshd = await Sshd.start();
  gw = await startGateway({
    gateway: {},
    connections: [
      directConnection(sshd, 'dev1'),
      directConnection(sshd, 'many', { max_sessions: 4 }),
      directConnection(sshd, 'reuse'),
      directConnection(sshd, 'idle', { timeouts: { idle_s: 1 } }),
      // As many sessions as the test sshd allows (MaxSessions 10): no channel left over for a kill.
      directConnection(sshd, 'full', { max_sessions: 10 }),
    ],
  });
});
after(async () => {
  await gw?.close();
  await sshd?.stop();
});

const runOk = (args: Record<string, unknown>): Promise<CommandResult> => callOk<CommandResult>(gw, 'run_command', { connection: 'dev1', ...args });

/** PIDs on this machine (the device) whose command line matches `pattern`. */
async function pgrep(pattern: string): Promise<number[]> {
  try {
    const { stdout } = await run('pgrep', ['-f', pattern]);
    return stdout.trim().split('\n').filter(Boolean).map(Number);
  } catch (err) {
    if ((err as { code?: number }).code === 1) return []; // none
    throw err;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function auditEvents(): Promise<{ event: string; connection?: string; [k: string]: unknown }[]> {
  const text = await readFile(gw.auditPath, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event: string; connection?: string });
}

async function rssKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

async function connectionState(name: string): Promise<string> {
  const { connections } = await callOk<{ connections: ConnectionView[] }>(gw, 'list_connections', {});
  return connections.find((c) => c.name === name)!.state;
}

test('a non-zero exit is data, not a tool error; stdout and stderr come back separately', async () => {
  const result = (await gw.client.callTool({ name: 'run_command', arguments: { connection: 'dev1', command: 'echo to-out; echo to-err >&2; exit 7' } })) as CallToolResult;
  assert.notEqual(result.isError, true);
  const r = result.structuredContent as unknown as CommandResult;
  assert.equal(r.exit_code, 7);
  assert.equal(r.signal, null);
  assert.equal(r.stdout, 'to-out\n');
  assert.equal(r.stderr, 'to-err\n');
  assert.equal(r.stdout_total_bytes, 7);
  assert.equal(r.stderr_total_bytes, 7);
  assert.equal(r.stdout_truncated, false);
  assert.equal(r.timed_out, false);
  assert.equal(r.connection, 'dev1');
  assert.ok(r.duration_ms >= 0);
  // The short text summary is there for clients that ignore structuredContent.
  const text = (result.content as { type: string; text: string }[])[0].text;
  assert.match(text, /exit 7/);
  assert.match(text, /to-out/);
  const ok = await runOk({ command: 'true' });
  assert.equal(ok.exit_code, 0);
  assert.equal(ok.stdout, '');
  assert.equal(ok.stderr, '', 'the gateway leaves nothing of its own in stderr');
});

test('a command killed by a signal reports the signal', async () => {
  const r = await runOk({ command: 'echo before; kill -TERM $$; echo after' });
  assert.match(r.signal ?? '', /^(SIG)?TERM$/);
  assert.equal(r.exit_code, null);
  assert.equal(r.stdout, 'before\n');
  assert.equal(r.timed_out, false);
});

test('cwd, env and stdin reach the command exactly', async () => {
  const cwd = await runOk({ command: 'pwd', cwd: sshd.home });
  assert.equal(cwd.stdout, `${sshd.home}\n`);
  const missing = await runOk({ command: 'pwd', cwd: '/no/such/dir' });
  assert.notEqual(missing.exit_code, 0, 'a missing cwd does not run the command elsewhere');
  assert.equal(missing.stdout, '');

  const tricky = `it's "quoted" $HOME \`id\` ; rm -rf / \n second line`;
  const env = await runOk({ command: 'printf "%s|%s" "$GREETING" "$OTHER"', env: { GREETING: tricky, OTHER: 'x' } });
  assert.equal(env.stdout, `${tricky}|x`);

  const input = 'line one\nzwei — drei €\n\nlast';
  const stdin = await runOk({ command: 'cat; echo; wc -l < /dev/null', stdin: input });
  assert.equal(stdin.stdout, `${input}\n0\n`);
  // No stdin given: the command sees EOF at once instead of hanging.
  const eof = await runOk({ command: 'cat; echo done', timeout_s: 10 });
  assert.equal(eof.stdout, 'done\n');
  assert.equal(eof.timed_out, false);
});

test('commands never get a pty', async () => {
  const r = await runOk({
    command: 'tty; if [ -t 0 ]; then echo stdin-tty; else echo stdin-not-tty; fi; if [ -t 1 ]; then echo stdout-tty; else echo stdout-not-tty; fi',
  });
  assert.match(r.stdout, /^not a tty$/m);
  assert.match(r.stdout, /^stdin-not-tty$/m);
  assert.match(r.stdout, /^stdout-not-tty$/m);
  assert.equal(r.exit_code, 0);
});

test('max_output_bytes keeps the head and the tail with total byte counts', async () => {
  const r = await runOk({ command: 'seq 1 100000; seq 1 3 >&2', max_output_bytes: 1000 });
  const { stdout: expected } = await run('seq', ['1', '100000']);
  assert.equal(r.stdout_total_bytes, Buffer.byteLength(expected));
  assert.equal(r.stdout_truncated, true);
  assert.ok(r.stdout.startsWith('1\n2\n3\n'), r.stdout.slice(0, 20));
  assert.ok(r.stdout.endsWith('99999\n100000\n'), r.stdout.slice(-20));
  assert.match(r.stdout, /bytes omitted/);
  assert.ok(Buffer.byteLength(r.stdout) < 1100);
  assert.equal(r.stderr, '1\n2\n3\n');
  assert.equal(r.stderr_truncated, false);
});

test('a 200 MB output comes back capped with its true size, and the gateway memory stays bounded', async () => {
  const pid = gw.pid();
  assert.ok(pid, 'gateway pid');
  await runOk({ command: 'head -c 1000000 /dev/zero' }); // warm up buffers before measuring
  const before = await rssKiB(pid);
  const r = await runOk({ command: 'head -c 200000000 /dev/zero; echo tail-marker', timeout_s: 60 });
  const afterRun = await rssKiB(pid);
  assert.equal(r.exit_code, 0);
  assert.equal(r.stdout_total_bytes, 200_000_012);
  assert.equal(r.stdout_truncated, true);
  assert.ok(r.stdout.endsWith('tail-marker\n'));
  assert.ok(Buffer.byteLength(r.stdout) < 70 * 1024, `${Buffer.byteLength(r.stdout)} bytes returned`);
  // Peak resident memory during the whole transfer (VmHWM), not just after it. Far below the 200 MB that
  // streamed through: the output was never held. (What remains is garbage the GC has not returned yet.)
  console.log(`gateway RSS before ${before.rss} KiB, peak ${afterRun.hwm} KiB after 200 MB (${r.duration_ms} ms)`);
  assert.ok(afterRun.hwm - before.rss < 120 * 1024, `gateway RSS grew ${afterRun.hwm - before.rss} KiB while 200 MB streamed through`);
  assert.ok(afterRun.hwm < 256 * 1024, `gateway peak RSS ${afterRun.hwm} KiB`);
  // And it does not scale with the output: twice as much again leaves the peak where it was.
  const more = await runOk({ command: 'head -c 400000000 /dev/zero', timeout_s: 60 });
  assert.equal(more.stdout_total_bytes, 400_000_000);
  const afterMore = await rssKiB(pid);
  console.log(`gateway peak RSS ${afterMore.hwm} KiB after another 400 MB (${more.duration_ms} ms)`);
  assert.ok(afterMore.hwm - afterRun.hwm < 40 * 1024, `peak RSS rose from ${afterRun.hwm} to ${afterMore.hwm} KiB with 400 MB more output`);
});

test('non-UTF-8 output is reported, and output_encoding base64 gives the exact bytes', async () => {
  const r = await runOk({ command: "printf 'ok\\377\\376'" });
  assert.equal(r.stdout_invalid_utf8, true);
  assert.equal(r.encoding, 'utf8');
  assert.equal(r.stdout, 'ok\uFFFD\uFFFD');
  assert.equal(r.stderr_invalid_utf8, false);
  const b = await runOk({ command: "printf 'ok\\377\\376\\000\\n'", output_encoding: 'base64' });
  assert.equal(b.encoding, 'base64');
  assert.deepEqual(Buffer.from(b.stdout, 'base64'), Buffer.from([0x6f, 0x6b, 0xff, 0xfe, 0x00, 0x0a]));
  assert.equal(b.stdout_total_bytes, 6);
});

test('timeout_s kills the remote command and everything it started, even for a root login', async () => {
  assert.equal(await pgrep('sleep 301[78]').then((p) => p.length), 0, 'no leftovers from earlier runs');
  const call = runOk({ command: 'echo started; sleep 3017 & sleep 3018; echo not-reached', timeout_s: 1 });
  // Both processes really run on the device first.
  await waitFor('the remote sleeps to start', async () => (await pgrep('sleep 301[78]')).length >= 2);
  const r = await call;
  assert.equal(r.timed_out, true);
  assert.equal(r.cancelled, false);
  assert.equal(r.stdout, 'started\n');
  assert.ok(r.duration_ms >= 900 && r.duration_ms < 8000, `duration ${r.duration_ms}`);
  // sshd ignores the SSH signal request for root; the gateway's process-group kill must have done it.
  await waitFor('the remote processes to be gone', async () => (await pgrep('sleep 301[78]')).length === 0, 3000);
  const end = (await auditEvents()).filter((e) => e.event === 'command_end').at(-1);
  assert.equal(end?.timed_out, true);
  // The connection still works afterwards.
  assert.equal((await runOk({ command: 'echo still-fine' })).stdout, 'still-fine\n');
});

test('MCP cancellation kills the remote command too', async () => {
  assert.equal((await pgrep('sleep 302[78]')).length, 0);
  const controller = new AbortController();
  const started = Date.now();
  const call = gw.client.callTool(
    { name: 'run_command', arguments: { connection: 'dev1', command: 'sleep 3027 & sleep 3028; echo not-reached', timeout_s: 120 } },
    { signal: controller.signal },
  );
  await waitFor('the remote sleeps to start', async () => (await pgrep('sleep 302[78]')).length >= 2);
  const wait = 500 - (Date.now() - started);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  controller.abort();
  await assert.rejects(call, (err: Error) => /abort/i.test(err.name + err.message));
  await waitFor('the cancelled remote processes to be gone', async () => (await pgrep('sleep 302[78]')).length === 0, 6000);
  await waitFor('the audit record of the cancelled command', async () =>
    (await auditEvents()).some((e) => e.event === 'command_end' && e.cancelled === true),
  );
  assert.equal((await runOk({ command: 'echo after-cancel' })).stdout, 'after-cancel\n');
});

test('a timeout or cancellation right after the start (before the command reported itself) still kills it', async () => {
  assert.equal((await pgrep('sleep 30[34]9')).length, 0);
  for (let i = 0; i < 12; i++) {
    // Tiny timeouts fire while the command's process-group report may still be on its way.
    const r = (await gw.client.callTool(
      { name: 'run_command', arguments: { connection: 'dev1', command: 'sleep 3039', timeout_s: 0.001 + i * 0.001 } },
      { timeout: 15_000 },
    )) as CallToolResult;
    assert.notEqual(r.isError, true, JSON.stringify(r.content));
    assert.equal((r.structuredContent as unknown as CommandResult).timed_out, true);
  }
  for (let i = 0; i < 12; i++) {
    const controller = new AbortController();
    const call = gw.client.callTool(
      // (timeout_s is a backstop in case a cancel sent this early never reaches the server's handler)
      { name: 'run_command', arguments: { connection: 'dev1', command: 'sleep 3049', timeout_s: 5 } },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 2 + i * 2);
    await assert.rejects(call);
  }
  await waitFor('every early-stopped command to be gone', async () => (await pgrep('sleep 30[34]9')).length === 0, 8000);
});

test('commands that time out together while every session is busy are all killed', async () => {
  assert.equal((await pgrep('sleep 306[0-9]')).length, 0);
  // 8 (the default max_sessions) on dev1, then 10 on "full", where sshd has no channel left for a kill at all.
  for (const [connection, count] of [['dev1', 8], ['full', 10]] as const) {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        callOk<CommandResult>(gw, 'run_command', { connection, command: `echo go-${i}; sleep 306${i}`, timeout_s: 1 }),
      ),
    );
    results.forEach((r, i) => {
      assert.equal(r.timed_out, true, `${connection} #${i}`);
      assert.equal(r.stdout, `go-${i}\n`);
    });
    assert.ok(Date.now() - started < 10_000, `${connection}: ${Date.now() - started} ms`);
    await waitFor(`every timed-out command on ${connection} to be gone`, async () => (await pgrep('sleep 306[0-9]')).length === 0, 3000);
  }
  // Both connections still work.
  assert.equal((await callOk<CommandResult>(gw, 'run_command', { connection: 'full', command: 'echo ok' })).stdout, 'ok\n');
});

test('output streams as progress notifications while the command runs', async () => {
  const progress: { at: number; message?: string; progress: number }[] = [];
  const started = Date.now();
  const result = (await gw.client.callTool(
    { name: 'run_command', arguments: { connection: 'dev1', command: 'for i in 1 2 3 4; do echo tick$i; sleep 0.4; done' } },
    { onprogress: (p) => progress.push({ at: Date.now() - started, message: p.message, progress: p.progress }) },
  )) as CallToolResult;
  const finished = Date.now() - started;
  assert.notEqual(result.isError, true);
  assert.equal((result.structuredContent as unknown as CommandResult).stdout, 'tick1\ntick2\ntick3\ntick4\n');
  assert.ok(progress.length >= 2, `only ${progress.length} progress notification(s)`);
  const streamed = progress.map((p) => p.message ?? '').join('');
  for (const tick of ['tick1', 'tick2', 'tick3', 'tick4']) assert.ok(streamed.includes(tick), `progress lacks ${tick}: ${streamed}`);
  // Streamed while running, not all at the end.
  assert.ok(progress[0].at < finished - 700, `first progress at ${progress[0].at} ms, result at ${finished} ms`);
  assert.match(progress[0].message ?? '', /tick1/);
  // progress values only grow.
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i].progress > progress[i - 1].progress);
});

test('an unknown connection is a tool error that lists the known connections', async () => {
  const text = await callError(gw, 'run_command', { connection: 'no-such-device', command: 'true' });
  assert.match(text, /unknown connection "no-such-device"/);
  for (const name of ['dev1', 'many', 'reuse', 'idle', 'full']) assert.ok(text.includes(name), `lacks ${name}: ${text}`);
  assert.match(text, /list_connections/);
});

test('25 concurrent commands on one connection (max_sessions 4) all succeed with their own output', async () => {
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: 25 }, (_, i) =>
      callOk<CommandResult>(gw, 'run_command', { connection: 'many', command: `echo out-${i}; sleep 0.3; echo err-${i} >&2; exit ${i % 5}` }),
    ),
  );
  const elapsed = Date.now() - started;
  results.forEach((r, i) => {
    assert.equal(r.stdout, `out-${i}\n`, `command ${i} stdout`);
    assert.equal(r.stderr, `err-${i}\n`, `command ${i} stderr`);
    assert.equal(r.exit_code, i % 5, `command ${i} exit`);
  });
  // At most 4 at a time: 25 commands of 0.3 s need at least 7 rounds.
  assert.ok(elapsed >= 7 * 300 - 100, `25 commands finished in ${elapsed} ms, faster than 4 sessions allow`);
  const connects = (await auditEvents()).filter((e) => e.event === 'ssh_connect' && e.connection === 'many');
  assert.equal(connects.length, 1, 'one SSH connection carried all of them');
});

test('the connection is reused: several commands, one SSH login', async () => {
  const logins = (): number => (sshd.log.match(/Accepted publickey for /g) ?? []).length;
  const before = logins();
  for (let i = 0; i < 5; i++) assert.equal((await callOk<CommandResult>(gw, 'run_command', { connection: 'reuse', command: `echo ${i}` })).stdout, `${i}\n`);
  await new Promise((r) => setTimeout(r, 200)); // let sshd's log lines arrive
  assert.equal(logins() - before, 1, 'sshd saw exactly one login for five commands');
  assert.equal(await connectionState('reuse'), 'connected');
  const connects = (await auditEvents()).filter((e) => e.event === 'ssh_connect' && e.connection === 'reuse');
  assert.equal(connects.length, 1);
});

test('an idle connection is closed after idle_s and the next command reconnects', async () => {
  const r = await callOk<CommandResult>(gw, 'run_command', { connection: 'idle', command: 'echo first' });
  assert.equal(r.stdout, 'first\n');
  assert.equal(await connectionState('idle'), 'connected');
  await waitFor('the idle connection to close', async () => (await connectionState('idle')) === 'idle', 5000);
  await waitFor('the disconnect in the audit log', async () =>
    (await auditEvents()).some((e) => e.event === 'ssh_disconnect' && e.connection === 'idle'),
  );
  const again = await callOk<CommandResult>(gw, 'run_command', { connection: 'idle', command: 'echo second' });
  assert.equal(again.stdout, 'second\n');
  const connects = (await auditEvents()).filter((e) => e.event === 'ssh_connect' && e.connection === 'idle');
  assert.equal(connects.length, 2, 'reconnected once');
});
