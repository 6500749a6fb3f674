// A throwaway fleet in one temp folder, loopback only: two real sshd "devices" with generated, pinned host keys,
// the gateway's keys and config, and the tunnel device's `ssh -N -R` (kept up by TunnelClient).
import { mkdtemp, mkdir, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sshd, makeKeyPair, freePort, findSshd, requireOpenSshClient, type KeyPair } from './local-sshd.js';
import { knownHostsLine, publicKeyLineOf } from '../tunnel/edge-setup.js';
import { TunnelClient, demoTunnelArgv } from './tunnel-client.js';
import { demoConfig, DIRECT, TUNNEL, GATEWAY_KEY, TUNNEL_HOST_KEY, AUDIT_LOG } from './config.js';
import type { Cleanup } from './cleanup.js';

export interface Fleet {
  dir: string;
  configPath: string;
  auditPath: string;
  /** Every hostile attempt in the demo tries to create this file; it must never exist. */
  marker: string;
  direct: Sshd;
  tunnel: Sshd;
  tunnelListenPort: number;
  forwardPort: number;
  /** The device's tunnel command, as run. */
  tunnelArgv: string[];
  tunnelClient: TunnelClient;
  logDirOf(device: Sshd): string;
}

const LOG_LINES = [
  'boot: kernel 6.1 up, 4 cpus',
  'net: eth0 link up 1000 Mb/s',
  'sensor: temperature 41.2 C',
  'app: collector started (pid 812)',
  'app: uploaded 128 readings',
  'sensor: temperature 43.9 C',
];

const logDirOf = (device: Sshd): string => path.join(device.dir, 'log');

/** Fails fast, before anything is made, if OpenSSH is missing (MissingOpenSshError names the package). */
export function checkPrerequisites(): void {
  findSshd();
  requireOpenSshClient();
}

async function startDevice(cleanup: Cleanup, dir: string, gatewayKey: KeyPair): Promise<Sshd> {
  const device = await Sshd.start({ dir, clientKey: gatewayKey, ownProcessGroup: true });
  cleanup.add(`stop sshd in ${dir}`, () => device.kill('SIGTERM'), () => device.process?.kill('SIGKILL'));
  const logDir = logDirOf(device);
  await mkdir(logDir, { recursive: true });
  await writeFile(path.join(logDir, 'app.log'), LOG_LINES.map((l, i) => `2025-01-01T08:0${i}:00Z ${l}`).join('\n') + '\n');
  return device;
}

export async function buildFleet(cleanup: Cleanup): Promise<Fleet> {
  // Between stages: stop if a signal came, so nothing new is created while cleanup removes what exists.
  const checkpoint = (): void => cleanup.throwIfInterrupted();
  const dir = await mkdtemp(path.join(tmpdir(), 'mcp-ssh-gateway-demo-'));
  cleanup.addDir(dir);
  checkpoint();
  const keys = path.join(dir, 'keys');
  const edge = path.join(dir, 'devices', `${TUNNEL}-edge`);
  await mkdir(keys, { mode: 0o700 });
  await mkdir(path.join(edge, 'home'), { recursive: true, mode: 0o700 });

  const [gatewayKey, tunnelHostKey, edgeKey] = await Promise.all([
    makeKeyPair(keys, path.basename(GATEWAY_KEY)),
    makeKeyPair(keys, path.basename(TUNNEL_HOST_KEY)),
    makeKeyPair(edge, `${TUNNEL}_ed25519`),
  ]);
  checkpoint();
  const [direct, tunnel] = await Promise.all([
    startDevice(cleanup, path.join(dir, 'devices', DIRECT), gatewayKey),
    startDevice(cleanup, path.join(dir, 'devices', TUNNEL), gatewayKey),
  ]);
  checkpoint();
  const [tunnelListenPort, forwardPort] = await Promise.all([freePort(), freePort()]);

  // The device trusts the gateway's tunnel host key, as edge-setup tells an operator to arrange.
  const hostKeyLine = publicKeyLineOf(await readFile(tunnelHostKey.privatePath));
  const knownHostsFile = path.join(edge, 'known_hosts');
  await writeFile(knownHostsFile, knownHostsLine('127.0.0.1', tunnelListenPort, hostKeyLine) + '\n');
  const tunnelArgv = demoTunnelArgv({
    name: TUNNEL,
    port: forwardPort,
    gatewayHost: '127.0.0.1',
    tunnelPort: tunnelListenPort,
    hostKeyLine,
    identityFile: edgeKey.privatePath,
    knownHostsFile,
    sshdPort: tunnel.port,
  });
  const tunnelClient = new TunnelClient(tunnelArgv, { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.join(edge, 'home') });
  cleanup.add('stop the tunnel device', () => tunnelClient.stop(), () => tunnelClient.stopSync());

  const configPath = path.join(dir, 'connections.json');
  const config = demoConfig({ direct, tunnel, tunnelListenPort, forwardPort, edgePublicKeyLine: edgeKey.publicLine, logDirOf });
  await writeFile(configPath, JSON.stringify(config, null, 2) + '\n');
  checkpoint();

  return {
    dir,
    configPath,
    auditPath: path.join(dir, AUDIT_LOG),
    marker: path.join(dir, 'PWNED'),
    direct,
    tunnel,
    tunnelListenPort,
    forwardPort,
    tunnelArgv,
    tunnelClient,
    logDirOf,
  };
}
