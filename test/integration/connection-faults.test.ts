// What an agent sees when the device side goes wrong: wrong or unknown host key, refused key, nothing listening,
// sshd dying mid-command, a port that never speaks SSH. Real sshd processes, real MCP client over stdio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile, appendFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Sshd, makeKeyPair, fingerprintOf, freePort, type KeyPair } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';

const run = promisify(execFile);

interface CommandResult {
  exit_code: number | null;
  stdout: string;
}
interface ConnectionView {
  name: string;
  state: string;
  failures: number;
  last_error: string | null;
}

let sshd: Sshd; // the healthy device
let flaky: Sshd; // the device that dies mid-command
let locked: Sshd; // a device that knows only a passphrase-protected key
const PASSPHRASE = 'open sesame 42';
let dir: string;
let strangerKey: KeyPair; // a client key no device knows
let otherHostKey: KeyPair; // some other device's host key
let knownHostsPath: string; // starts empty
let refusedPort: number;
let silent: net.Server; // accepts TCP, never says a word
const silentSockets = new Set<net.Socket>();
let gw: GatewayUnderTest;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-faults-'));
  sshd = await Sshd.start();
  flaky = await Sshd.start();
  strangerKey = await makeKeyPair(dir, 'stranger_ed25519');
  const lockedKey = await makeKeyPair(dir, 'locked_ed25519', PASSPHRASE);
  locked = await Sshd.start({ clientKey: lockedKey });
  const passphraseFile = path.join(dir, 'passphrase');
  await writeFile(passphraseFile, PASSPHRASE + '\n', { mode: 0o600 });
  otherHostKey = await makeKeyPair(dir, 'other_host_key');
  knownHostsPath = path.join(dir, 'known_hosts');
  await writeFile(knownHostsPath, '');
  refusedPort = await freePort();
  silent = net.createServer((sock) => {
    silentSockets.add(sock);
    sock.on('close', () => silentSockets.delete(sock));
    sock.on('error', () => undefined);
    sock.resume(); // read (and ignore) what the gateway sends, so its hang-up is seen
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const silentPort = (silent.address() as net.AddressInfo).port;

  gw = await startGateway({
    gateway: { retry: { backoff_ms: 50 } },
    connections: [
      directConnection(sshd, 'dev1'),
      directConnection(sshd, 'wrong-pin', { host_key: fingerprintOf(otherHostKey.publicLine) }),
      directConnection(sshd, 'unknown-host', { host_key: undefined, known_hosts: knownHostsPath }),
      directConnection(sshd, 'stranger', { id_file: strangerKey.privatePath }),
      directConnection(sshd, 'nobody-home', { port: refusedPort }),
      directConnection(flaky, 'flaky', { retry: { attempts: 1 } }),
      directConnection(sshd, 'silent', { port: silentPort, timeouts: { connect_s: 1 } }),
      directConnection(locked, 'locked-env', { passphrase_env: 'LOCKED_KEY_PASSPHRASE' }),
      directConnection(locked, 'locked-file', { passphrase_file: passphraseFile }),
    ],
  }, { env: { LOCKED_KEY_PASSPHRASE: PASSPHRASE } });
});
after(async () => {
  await gw?.close();
  for (const s of silentSockets) s.destroy();
  await new Promise((r) => silent?.close(r));
  await sshd?.stop();
  await flaky?.stop();
  await locked?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function auditEvents(): Promise<{ event: string; connection?: string; [k: string]: unknown }[]> {
  return (await readFile(gw.auditPath, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event: string });
}

async function view(name: string): Promise<ConnectionView> {
  const { connections } = await callOk<{ connections: ConnectionView[] }>(gw, 'list_connections', {});
  return connections.find((c) => c.name === name)!;
}

async function pgrep(pattern: string): Promise<number[]> {
  try {
    return (await run('pgrep', ['-f', pattern])).stdout.trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const expectOk = async (connection: string, command = 'echo ok'): Promise<CommandResult> => {
  const r = await callOk<CommandResult>(gw, 'run_command', { connection, command });
  assert.equal(r.exit_code, 0);
  return r;
};

test('a host key that does not match the pin is refused, showing the presented fingerprint and how to pin it', async () => {
  const text = await callError(gw, 'run_command', { connection: 'wrong-pin', command: 'echo should-not-run' });
  assert.ok(text.includes(sshd.hostKeyFingerprint), `lacks the presented fingerprint: ${text}`);
  assert.ok(text.includes(fingerprintOf(otherHostKey.publicLine)), 'names the pinned fingerprint');
  assert.ok(text.includes(`"host_key": "${sshd.hostKeyFingerprint}"`), text);
  assert.match(text, /mismatch/i);
  const events = await auditEvents();
  assert.ok(events.some((e) => e.event === 'host_key_mismatch' && e.connection === 'wrong-pin' && e.fingerprint === sshd.hostKeyFingerprint));
  assert.ok(!events.some((e) => e.event === 'command_start' && e.connection === 'wrong-pin'), 'nothing ran');
  const v = await view('wrong-pin');
  assert.equal(v.state, 'failing');
  assert.ok(v.last_error?.includes(sshd.hostKeyFingerprint));
});

test('an unknown host (no pin, empty known_hosts) is refused with the exact line to add; adding it lets it in', async () => {
  const text = await callError(gw, 'run_command', { connection: 'unknown-host', command: 'true' });
  assert.match(text, /not known/);
  assert.ok(text.includes(sshd.hostKeyFingerprint), text);
  assert.ok(text.includes(sshd.knownHostsLine), `lacks the known_hosts line ${sshd.knownHostsLine}: ${text}`);
  assert.ok(text.includes(knownHostsPath), 'says which file was searched');
  // Doing what the message says works, without restarting the gateway.
  await appendFile(knownHostsPath, sshd.knownHostsLine + '\n');
  assert.equal((await expectOk('unknown-host', 'echo trusted')).stdout, 'trusted\n');
});

test('a key the device does not accept is refused with what to add, and no password is ever tried', async () => {
  const text = await callError(gw, 'run_command', { connection: 'stranger', command: 'true' });
  assert.match(text, /refused the gateway's key/);
  assert.ok(text.includes(`${strangerKey.privatePath}.pub`), `names the public key to add: ${text}`);
  assert.match(text, /authorized_keys/);
  assert.match(text, /Password and keyboard-interactive logins are never tried/);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!/Failed (password|keyboard-interactive)|method (password|keyboard-interactive)/.test(sshd.log), 'sshd saw a password attempt');
  // The refusal is permanent (retrying the same key is pointless): one attempt, not a retry storm.
  const fails = (await auditEvents()).filter((e) => e.event === 'ssh_fail' && e.connection === 'stranger');
  assert.equal(fails.length, 1);
});

test('a passphrase-protected key logs in with passphrase_env or passphrase_file', async () => {
  assert.equal((await expectOk('locked-env', 'echo via-env')).stdout, 'via-env\n');
  assert.equal((await expectOk('locked-file', 'echo via-file')).stdout, 'via-file\n');
  // The passphrase never reaches the audit log.
  assert.ok(!(await readFile(gw.auditPath, 'utf8')).includes(PASSPHRASE));
});

test('nothing listening on the port is a clear "connection refused" error', async () => {
  const started = Date.now();
  const text = await callError(gw, 'run_command', { connection: 'nobody-home', command: 'true' });
  assert.match(text, new RegExp(`connection refused by 127\\.0\\.0\\.1:${refusedPort}`));
  assert.match(text, /is sshd running/);
  assert.ok(Date.now() - started < 5000);
});

test('sshd killed mid-command: the call says the connection was lost, the gateway keeps serving, and reconnects after a restart', async () => {
  assert.equal((await expectOk('flaky', 'echo warm')).stdout, 'warm\n');
  const call = gw.client.callTool({ name: 'run_command', arguments: { connection: 'flaky', command: 'sleep 3037; echo finished', timeout_s: 60 } });
  await waitFor('the remote command to start', async () => (await pgrep('sleep 3037')).length > 0);
  const started = Date.now();
  await flaky.kill();
  const result = await call;
  assert.equal(result.isError, true, JSON.stringify(result));
  const text = (result.content as { text: string }[]).map((c) => c.text).join('\n');
  assert.match(text, /connection was lost/);
  assert.match(text, /may or may not have finished/);
  assert.ok(Date.now() - started < 10_000, 'the loss is noticed promptly, not after the command timeout');

  // The gateway is still alive and serving: other devices work, and it reports the dead one.
  assert.equal((await expectOk('dev1', 'echo alive')).stdout, 'alive\n');
  const down = await callError(gw, 'run_command', { connection: 'flaky', command: 'true' });
  assert.match(down, /connection refused/);
  const v = await view('flaky');
  assert.ok(v.failures >= 1);
  assert.notEqual(v.state, 'connected');

  await flaky.restart();
  assert.equal((await expectOk('flaky', 'echo back')).stdout, 'back\n');
  assert.equal((await view('flaky')).state, 'connected');
  const connects = (await auditEvents()).filter((e) => e.event === 'ssh_connect' && e.connection === 'flaky');
  assert.equal(connects.length, 2, 'reconnected');
});

test('a port that accepts TCP but never speaks SSH times out after connect_s, while other devices keep working', async () => {
  const started = Date.now();
  const hanging = callError(gw, 'run_command', { connection: 'silent', command: 'true' }).then((text) => ({ text, ms: Date.now() - started }));
  // While the silent device hangs, another device answers promptly.
  const other = await expectOk('dev1', 'echo meanwhile');
  const otherMs = Date.now() - started;
  assert.equal(other.stdout, 'meanwhile\n');
  const { text, ms } = await hanging;
  assert.ok(otherMs < ms, `the healthy device (${otherMs} ms) waited behind the silent one (${ms} ms)`);
  assert.match(text, /no SSH handshake .* within 1 s/);
  assert.ok(ms >= 900 && ms < 6000, `timed out after ${ms} ms`);
  // The gateway hung up on the silent port (no leaked sockets), and still serves.
  await waitFor('the silent sockets to close', async () => silentSockets.size === 0, 3000);
  assert.equal((await expectOk('dev1', 'echo still')).stdout, 'still\n');
});
