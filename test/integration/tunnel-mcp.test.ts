// Tunnel mode end to end: a real sshd as the device, the real OpenSSH `ssh -N -R` as its tunnel into the
// gateway's embedded server, and the agent's side driven through the real MCP client over stdio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { Sshd, makeKeyPair, freePort, fingerprintOf, type KeyPair } from '../helpers/sshd.js';
import { startGateway, callOk, callError, CLI, type GatewayUnderTest } from '../helpers/gateway.js';

const run = promisify(execFile);

let sshd: Sshd;
let gw: GatewayUnderTest;
let keysDir: string;
let edgeKey: KeyPair;
let tunnelHostKey: KeyPair;
let tunnelListenPort: number;
let forwardPort: number;
let gatewayKnownHosts: string;
const tunnels: ChildProcess[] = [];

interface ConnectionView {
  name: string;
  state: string;
  tunnel: { up: boolean; since?: string; peer?: string; last_down_reason?: string } | null;
}

async function listTunnel(): Promise<ConnectionView> {
  const { connections } = await callOk<{ connections: ConnectionView[] }>(gw, 'list_connections', {});
  return connections.find((c) => c.name === 'edge-1')!;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What `edge-setup` printed for the device, read once in the first test. */
let printedTunnelLine = '';

/**
 * The device side of the tunnel: exactly the `ssh -N -R` line `edge-setup` printed, with the three things a test
 * machine must differ in swapped for its own: the device's sshd port, its key file and its known_hosts file.
 */
function openTunnel(): ChildProcess {
  assert.ok(printedTunnelLine, 'edge-setup output was read');
  const argv = printedTunnelLine
    .replace(`-R ${forwardPort}:localhost:22 `, `-R ${forwardPort}:localhost:${sshd.port} `)
    .replace('/etc/mcp-ssh-gateway/edge-1_ed25519', edgeKey.privatePath)
    .replace('/etc/mcp-ssh-gateway/known_hosts', gatewayKnownHosts)
    .split(' ');
  assert.equal(argv[0], 'ssh');
  const child = spawn('ssh', ['-o', 'BatchMode=yes', ...argv.slice(1)], { stdio: ['ignore', 'ignore', 'pipe'] });
  tunnels.push(child);
  return child;
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

before(async () => {
  sshd = await Sshd.start();
  keysDir = await mkdtemp(path.join(tmpdir(), 'mcpgw-tunnel-keys-'));
  edgeKey = await makeKeyPair(keysDir, 'edge_ed25519');
  tunnelHostKey = await makeKeyPair(keysDir, 'tunnel_host_ed25519_key');
  tunnelListenPort = await freePort();
  forwardPort = await freePort();
  gatewayKnownHosts = path.join(keysDir, 'gateway_known_hosts');
  const [type, blob] = tunnelHostKey.publicLine.split(/\s+/);
  await writeFile(gatewayKnownHosts, `[127.0.0.1]:${tunnelListenPort} ${type} ${blob}\n`);
  gw = await startGateway({
    gateway: { tunnel_listen: `127.0.0.1:${tunnelListenPort}`, tunnel_host_key: tunnelHostKey.privatePath, timeouts: { keepalive_s: 1 } },
    connections: [
      {
        name: 'edge-1',
        mode: 'tunnel',
        user: sshd.user,
        host: '127.0.0.1',
        port: forwardPort,
        id_file: sshd.clientKey.privatePath,
        host_key: fingerprintOf(sshd.hostKey.publicLine),
        edge_public_key: edgeKey.publicLine,
      },
    ],
  });
});

after(async () => {
  for (const t of tunnels) t.kill('SIGKILL');
  await gw?.close();
  await sshd?.stop();
  await rm(keysDir, { recursive: true, force: true });
});

test('edge-setup prints the tunnel command, the gateway known_hosts line and a systemd unit', async () => {
  const { stdout } = await run(process.execPath, [CLI, 'edge-setup', 'edge-1', '--config', gw.configPath, '--gateway', '127.0.0.1']);
  const [type, blob] = tunnelHostKey.publicLine.split(/\s+/);
  assert.ok(stdout.includes(`[127.0.0.1]:${tunnelListenPort} ${type} ${blob}`), 'known_hosts line for the gateway host key');
  assert.match(stdout, /Restart=always/);
  printedTunnelLine = stdout.split('\n').find((line) => line.startsWith('ssh -N -R ')) ?? '';
  assert.match(printedTunnelLine, new RegExp(`^ssh -N -R ${forwardPort}:localhost:22 -p ${tunnelListenPort} .*ExitOnForwardFailure=yes.*ServerAliveInterval=\\d+.* edge-1@127\\.0\\.0\\.1$`));
  const wrong = await run(process.execPath, [CLI, 'edge-setup', 'nope', '--config', gw.configPath]).catch((err: { code: number; stderr: string }) => err);
  assert.equal((wrong as { code: number }).code, 2);
});

test('a tunnel device is reported down until it dials in, and then runs commands through its tunnel', async () => {
  const before = await listTunnel();
  assert.equal(before.state, 'tunnel_down');
  assert.equal(before.tunnel?.up, false);
  const refused = await callError(gw, 'run_command', { connection: 'edge-1', command: 'true' });
  assert.match(refused, /tunnel/i);

  openTunnel();
  const up = await until('tunnel up', async () => ((await listTunnel()).tunnel?.up ? listTunnel() : undefined));
  assert.match(up.tunnel?.peer ?? '', /^127\.0\.0\.1:\d+$/);
  assert.ok(up.tunnel?.since);

  const result = await callOk<{ exit_code: number; stdout: string }>(gw, 'run_command', { connection: 'edge-1', command: 'echo through-the-tunnel' });
  assert.equal(result.exit_code, 0);
  assert.equal(result.stdout, 'through-the-tunnel\n');
});

test('nothing listens on the forwarded port without bind_loopback', async () => {
  assert.equal(await isListening(forwardPort), false);
});

test('a dropped tunnel is reported and the next login restores service without a gateway restart', async () => {
  for (const t of tunnels) t.kill('SIGKILL');
  const down = await until('tunnel down', async () => {
    const view = await listTunnel();
    return view.tunnel?.up === false ? view : undefined;
  });
  assert.equal(down.state, 'tunnel_down');
  const failed = await callError(gw, 'run_command', { connection: 'edge-1', command: 'true' });
  assert.match(failed, /tunnel/i);

  openTunnel();
  await until('tunnel up again', async () => ((await listTunnel()).tunnel?.up ? true : undefined));
  const result = await callOk<{ stdout: string }>(gw, 'run_command', { connection: 'edge-1', command: 'echo back' });
  assert.equal(result.stdout, 'back\n');
});

test('a command in flight when the tunnel drops fails with a clear error', async () => {
  const running = gw.client.callTool({ name: 'run_command', arguments: { connection: 'edge-1', command: 'sleep 20' } });
  await new Promise((r) => setTimeout(r, 700));
  for (const t of tunnels) t.kill('SIGKILL');
  const result = await running;
  assert.equal(result.isError, true);
  const text = (result.content as { text: string }[]).map((c) => c.text).join('\n');
  assert.match(text, /lost|tunnel/i);
});
