// The seed's original array form, with a tunnel entry it has no place to give an edge key for: it loads, the
// tunnel entry is reported with the line to add, and the direct connections keep working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { rm } from 'node:fs/promises';
import { Sshd } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, writeConfig, CLI, type GatewayUnderTest } from '../helpers/gateway.js';

const run = promisify(execFile);
let sshd: Sshd;
let gw: GatewayUnderTest;

function seedConfig(): unknown[] {
  const { host_key: _pin, ...direct } = directConnection(sshd, 'pi-1');
  return [
    { ...direct, known_hosts: `${sshd.dir}/known_hosts` },
    { name: 'edge-vm-2', mode: 'tunnel', user: 'root', host: '127.0.0.1', port: 22222, id_file: sshd.clientKey.privatePath },
  ];
}

before(async () => {
  sshd = await Sshd.start();
  await import('node:fs/promises').then((fs) => fs.writeFile(`${sshd.dir}/known_hosts`, sshd.knownHostsLine + '\n'));
  gw = await startGateway(seedConfig());
});

after(async () => {
  await gw?.close();
  await sshd?.stop();
});

test('check accepts the original array form with a tunnel entry and says what the tunnel entry lacks', async () => {
  const { dir, configPath } = await writeConfig(seedConfig());
  const { stdout } = await run(process.execPath, [CLI, 'check', '--config', configPath]).finally(() => rm(dir, { recursive: true, force: true }));
  assert.match(stdout, /ok \(array form, 2 connection\(s\), 1 in tunnel mode/);
  assert.match(stdout, /"edge-vm-2".*without edge_public_key.*Add "edge_public_key"/);
});

test('the direct connection works while the tunnel entry is reported with the line to add', async () => {
  const ran = await callOk<{ stdout: string }>(gw, 'run_command', { connection: 'pi-1', command: 'echo seed' });
  assert.equal(ran.stdout, 'seed\n');
  const { connections } = await callOk<{ connections: { name: string; state: string; tunnel: { up: boolean; setup_hint?: string } | null }[] }>(gw, 'list_connections', {});
  const edge = connections.find((c) => c.name === 'edge-vm-2');
  assert.equal(edge?.state, 'tunnel_down');
  assert.match(edge?.tunnel?.setup_hint ?? '', /edge_public_key/);
  const refused = await callError(gw, 'run_command', { connection: 'edge-vm-2', command: 'true' });
  assert.match(refused, /tunnel/);
});
