// The command line as a user runs it: the built CLI (dist/cli/main.js) spawned as a process, with its exit
// codes and output. `check --probe` talks to a real OpenSSH sshd on a loopback port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Sshd, freePort, makeKeyPair } from '../helpers/sshd.js';
import { CLI, callOk, directConnection, startGateway } from '../helpers/gateway.js';
import { writeBrokenConfig } from '../helpers/broken-config.js';
import { VERSION } from '../../src/version.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI asynchronously (so the test sshd's pipes keep draining) with a clean environment. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code: unknown = err ? (err as { code?: unknown }).code : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

function assertNoStackTrace(r: Run): void {
  const all = r.stdout + r.stderr;
  assert.ok(!/^\s{4}at /m.test(all), `stack trace in output:\n${all}`);
  assert.ok(!/\.(js|ts):\d+:\d+/.test(all), `source location in output:\n${all}`);
}

let sshd: Sshd;
let dir: string;
before(async () => {
  sshd = await Sshd.start();
  dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-cli-'));
});
after(async () => {
  await sshd?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function config(name: string, value: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, JSON.stringify(value, null, 2));
  return file;
}

test('--version prints the version and exits 0', async () => {
  const r = await cli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), VERSION);
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(r.stdout.trim(), pkg.version);
});

test('--help lists the commands and exits 0', async () => {
  const r = await cli(['--help']);
  assert.equal(r.code, 0);
  for (const word of ['serve --config', 'check --config', '--probe', 'keygen --out', 'Exit codes']) assert.ok(r.stdout.includes(word), `help lacks ${word}`);
  const sub = await cli(['check', '--help']);
  assert.equal(sub.code, 0);
});

test('an unknown command or option exits 2 with a pointer to --help', async () => {
  const r = await cli(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  assert.match(r.stderr, /--help/);
  assert.equal(r.stdout, '');
  assertNoStackTrace(r);
  const bad = await cli(['check', '--confg', 'x.json']);
  assert.equal(bad.code, 2);
  assertNoStackTrace(bad);
  const missing = await cli(['check']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--config is required/);
});

test('check on a good config exits 0, summarizes it, and warns that no policy is set', async () => {
  const file = await config('good.json', [directConnection(sshd, 'dev1'), directConnection(sshd, 'dev2', { policy: { deny: ['^reboot'] } })]);
  const r = await cli(['check', '--config', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ok \(array form, 2 connection\(s\)/);
  assert.match(r.stdout, /warning: .*"dev1".*no policy/);
  assert.ok(!/warning: .*"dev2"/.test(r.stdout), 'dev2 has a policy');
  assertNoStackTrace(r);
});

test('check warns about allow patterns that are not anchored', async () => {
  const file = await config('loose.json', [directConnection(sshd, 'dev3', { policy: { allow: ['uptime', '^df -h$'] } })]);
  const r = await cli(['check', '--config', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /warning: \[0\]\.policy\.allow\[0\] "uptime" is not anchored/);
  assert.ok(!/allow\[1\]/.test(r.stdout), 'an anchored pattern is not warned about');
});

test('check on a broken config exits 2 and prints every problem with its JSON path, no stack trace', async () => {
  const folder = await mkdtemp(path.join(dir, 'broken-'));
  const { file, expected } = await writeBrokenConfig(folder);
  const r = await cli(['check', '--config', file]);
  assert.equal(r.code, 2);
  for (const [at, message] of expected) {
    const line = r.stderr.split('\n').find((l) => l.includes(`${at}:`) && message.test(l));
    assert.ok(line, `no line for ${at} matching ${message} in:\n${r.stderr}`);
  }
  const count = Number(/(\d+) problem\(s\)/.exec(r.stderr)?.[1]);
  assert.ok(count >= expected.length, `reports ${count} problems`);
  assertNoStackTrace(r);
  // A config file that is not JSON, or not there, is also a clean exit 2.
  const notJson = await config('not-json.json', '');
  await writeFile(notJson, '{ "connections": [ }');
  const j = await cli(['check', '--config', notJson]);
  assert.equal(j.code, 2);
  assert.match(j.stderr, /not valid JSON/);
  assertNoStackTrace(j);
  const absent = await cli(['check', '--config', path.join(dir, 'nope.json')]);
  assert.equal(absent.code, 2);
  assert.match(absent.stderr, /ENOENT/);
  assertNoStackTrace(absent);
});

test('check --probe connects to a live device and prints ok', async () => {
  const file = await config('probe-ok.json', [directConnection(sshd, 'dev1')]);
  const r = await cli(['check', '--config', file, '--probe']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^ok +dev1: connected in \d+ ms$/m);
});

test('check --probe against a stopped port prints FAIL with the reason and exits 1', async () => {
  const deadPort = await freePort();
  const file = await config('probe-fail.json', [directConnection(sshd, 'alive'), directConnection(sshd, 'dead', { port: deadPort })]);
  const started = Date.now();
  const r = await cli(['check', '--config', file, '--probe']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^ok +alive: /m);
  assert.match(r.stdout, new RegExp(`^FAIL +dead: connection refused by 127\\.0\\.0\\.1:${deadPort}`, 'm'));
  assert.ok(Date.now() - started < 15_000);
  assertNoStackTrace(r);
});

test('keygen --out writes two key pairs with private keys 0600 and refuses to overwrite them', async () => {
  const out = path.join(dir, 'keys');
  const r = await cli(['keygen', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const files = (await readdir(out)).sort();
  assert.deepEqual(files, ['id_ed25519', 'id_ed25519.pub', 'tunnel_host_ed25519_key', 'tunnel_host_ed25519_key.pub']);
  for (const f of ['id_ed25519', 'tunnel_host_ed25519_key']) {
    assert.equal((await stat(path.join(out, f))).mode & 0o777, 0o600, `${f} mode`);
    assert.match(await readFile(path.join(out, f), 'utf8'), /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    assert.match(await readFile(path.join(out, `${f}.pub`), 'utf8'), /^ssh-ed25519 AAAA\S+ /);
  }
  // The keys it writes are usable as connection id_file: check accepts them.
  const file = await config('keygen.json', [{ ...directConnection(sshd, 'k'), id_file: path.join(out, 'id_ed25519') }]);
  assert.equal((await cli(['check', '--config', file])).code, 0);

  const before = await readFile(path.join(out, 'id_ed25519'));
  const again = await cli(['keygen', '--out', out]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already exists; refusing to overwrite/);
  assertNoStackTrace(again);
  assert.deepEqual(await readFile(path.join(out, 'id_ed25519')), before, 'the existing key is untouched');
});

test('serve with a bad listen flag exits 2; a tunnel port already in use exits 1 and the audit log says why', async () => {
  const edge = await makeKeyPair(dir, `edge-${Date.now()}`);
  const file = await config('serve-tunnel.json', {
    gateway: { tunnel_host_key: sshd.hostKey.privatePath },
    connections: [{ name: 'edge-1', mode: 'tunnel', user: 'root', host: '127.0.0.1', port: 22222, id_file: sshd.clientKey.privatePath, edge_public_key: edge.publicLine }],
  });
  const bad = await cli(['serve', '--config', file, '--tunnel-listen', 'nowhere']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--tunnel-listen: expected HOST:PORT/);
  assertNoStackTrace(bad);

  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
  const { port } = taken.address() as net.AddressInfo;
  try {
    const r = await cli(['serve', '--config', file, '--tunnel-listen', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /EADDRINUSE/);
    const records = (await readFile(path.join(path.dirname(file), 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { event: string; reason?: string });
    const last = records.at(-1);
    assert.equal(last?.event, 'gateway_stop');
    assert.match(last?.reason ?? '', /failed to start/);
  } finally {
    taken.close();
  }
});

test('a second serve on the same audit log exits 1 naming the running gateway; the first keeps serving', async () => {
  const gw = await startGateway([directConnection(sshd, 'dev1')]);
  try {
    const second = await cli(['serve', '--config', gw.configPath]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`already being written by another gateway \\(pid ${gw.pid()}\\)`));
    assert.match(second.stderr, /--http/, 'and how several clients can share one gateway');
    assert.equal(second.stdout, '');
    assertNoStackTrace(second);
    const r = await callOk<{ stdout: string }>(gw, 'run_command', { connection: 'dev1', command: 'echo still here' });
    assert.equal(r.stdout, 'still here\n');
    const events = (await readFile(gw.auditPath, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { event: string }).event);
    assert.equal(events.filter((e) => e === 'gateway_start').length, 1, 'the refused gateway wrote nothing');
  } finally {
    await gw.close();
  }
});

test('serve with a bad config exits 2 before speaking MCP, with the problems on stderr', async () => {
  const file = await config('serve-bad.json', [
    { ...directConnection(sshd, 'dev1'), mode: 'carrier-pigeon' },
    { ...directConnection(sshd, 'dev2'), id_file: 'missing' },
  ]);
  const r = await cli(['serve', '--config', file]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '', 'stdout belongs to MCP: nothing is written there');
  assert.match(r.stderr, /\[0\]\.mode/);
  assert.match(r.stderr, /\[1\]\.id_file: .*no such file/);
  assertNoStackTrace(r);
});
