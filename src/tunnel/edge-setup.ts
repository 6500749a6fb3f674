// What a device needs to join in tunnel mode, printed by `mcp-ssh-gateway edge-setup NAME`.
import ssh2 from 'ssh2';
import { knownHostsName } from '../ssh/host-keys.js';
import type { ParsedKey } from 'ssh2';

const { utils } = ssh2;

export const DEFAULT_EDGE_DIR = '/etc/mcp-ssh-gateway';

export interface EdgeSetupOptions {
  /** The tunnel connection's name: the device's login name on the tunnel server. */
  name: string;
  /** The port the device forwards. */
  port: number;
  /** How the device reaches the gateway (host name or address). */
  gatewayHost: string;
  tunnelPort: number;
  /** The gateway's host public key line ("ssh-ed25519 AAAA..."); see publicKeyLineOf. */
  hostKeyLine: string;
  /** The device's private key for the tunnel (default /etc/mcp-ssh-gateway/NAME_ed25519). */
  identityFile?: string;
  /** Where the device keeps the gateway's host key (default /etc/mcp-ssh-gateway/known_hosts). */
  knownHostsFile?: string;
  /** The port of the device's own sshd (default 22). */
  sshdPort?: number;
  /** The gateway's client public key (its id_file's .pub), for the device's authorized_keys, if known. */
  gatewayClientKeyLine?: string;
}

/** The public key line ("type base64") of a private or public key, e.g. the tunnel server's host key. */
export function publicKeyLineOf(key: string | Buffer): string {
  const parsed = utils.parseKey(key);
  const first = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (first === undefined || first instanceof Error) {
    throw new Error(`key does not parse${first instanceof Error ? `: ${first.message}` : ''}`);
  }
  return `${first.type} ${first.getPublicSSH().toString('base64')}`;
}

/** The known_hosts line OpenSSH looks up for host:port (a bare host for port 22, else "[host]:port"). */
export function knownHostsLine(host: string, port: number, publicKeyLine: string): string {
  const [type, blob] = publicKeyLine.trim().split(/\s+/);
  if (!type || !blob) throw new Error('host key line must be "TYPE BASE64"');
  return `${knownHostsName(host, port)} ${type} ${blob}`;
}

/** The device's tunnel command, as argv (no shell quoting needed: every part is checked to be plain). */
export function tunnelCommand(opts: EdgeSetupOptions): string[] {
  checkPlain(opts);
  const { identityFile, knownHostsFile } = withDefaults(opts);
  return [
    'ssh', '-N',
    '-R', `${opts.port}:localhost:${opts.sshdPort ?? 22}`,
    '-p', String(opts.tunnelPort),
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=3',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHostsFile}`,
    '-i', identityFile,
    `${opts.name}@${opts.gatewayHost}`,
  ];
}

export function renderEdgeSetup(opts: EdgeSetupOptions): string {
  const { identityFile, knownHostsFile } = withDefaults(opts);
  const command = tunnelCommand(opts);
  const commandLine = command.join(' ');
  const unitName = `mcp-ssh-tunnel-${opts.name}.service`;
  const dir = identityFile.includes('/') ? identityFile.slice(0, identityFile.lastIndexOf('/')) || '/' : '.';
  const lines = [
    `# Tunnel setup for device "${opts.name}": it dials ${opts.gatewayHost}:${opts.tunnelPort} and forwards its sshd (port ${opts.sshdPort ?? 22})`,
    `# to port ${opts.port} on the gateway. Run these on the device, as root.`,
    '',
    '# 1. The device key the tunnel logs in with (skip if it exists). Put the .pub line into the gateway',
    `#    config as "edge_public_key" of "${opts.name}".`,
    `mkdir -p ${dir} && chmod 700 ${dir}`,
    `test -f ${identityFile} || ssh-keygen -q -t ed25519 -N '' -C ${opts.name}-tunnel -f ${identityFile}`,
    `cat ${identityFile}.pub`,
    '',
    `# 2. Trust the gateway's tunnel host key: write this line to ${knownHostsFile}`,
    knownHostsLine(opts.gatewayHost, opts.tunnelPort, publicKeyLineOf(opts.hostKeyLine)),
    '',
    ...authorizedKeysStep(opts.gatewayClientKeyLine),
    '# 3. The tunnel (try it once in the foreground; Ctrl-C to stop):',
    commandLine,
    '',
    `# 4. Keep it up across reboots and drops: /etc/systemd/system/${unitName}`,
    '[Unit]',
    `Description=mcp-ssh-gateway reverse tunnel for ${opts.name}`,
    'Wants=network-online.target',
    'After=network-online.target',
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    `ExecStart=/usr/bin/${commandLine}`,
    'Restart=always',
    'RestartSec=5',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
    `#    then: systemctl daemon-reload && systemctl enable --now ${unitName}`,
    '',
    '# Or, without systemd, with autossh (-M 0: rely on ServerAlive* to notice a dead link):',
    `AUTOSSH_GATEWAYTIME=0 autossh -M 0 ${command.slice(1).join(' ')}`,
    '',
  ];
  return lines.join('\n');
}

function authorizedKeysStep(gatewayClientKeyLine: string | undefined): string[] {
  if (gatewayClientKeyLine === undefined) return [];
  return [
    "# 2b. The gateway still logs into the device's own sshd with its own key: add this line to the login",
    "#     user's ~/.ssh/authorized_keys on the device.",
    publicKeyLineOf(gatewayClientKeyLine),
    '',
  ];
}

function withDefaults(opts: EdgeSetupOptions): { identityFile: string; knownHostsFile: string } {
  return {
    identityFile: opts.identityFile ?? `${DEFAULT_EDGE_DIR}/${opts.name}_ed25519`,
    knownHostsFile: opts.knownHostsFile ?? `${DEFAULT_EDGE_DIR}/known_hosts`,
  };
}

/** Letters, digits and . _ - @ : / + = , only: safe unquoted in a shell and in a systemd ExecStart line. */
const PLAIN = /^[A-Za-z0-9._@:/+=,-]+$/;

function checkPlain(opts: EdgeSetupOptions): void {
  const { identityFile, knownHostsFile } = withDefaults(opts);
  const fields: Record<string, string> = { name: opts.name, gatewayHost: opts.gatewayHost, identityFile, knownHostsFile };
  for (const [field, value] of Object.entries(fields)) {
    if (!PLAIN.test(value)) throw new Error(`edge-setup: ${field} "${value}" has characters that are not safe in a command line; use letters, digits and . _ - @ : / + = ,`);
  }
  for (const [field, port] of Object.entries({ port: opts.port, tunnelPort: opts.tunnelPort, sshdPort: opts.sshdPort ?? 22 })) {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`edge-setup: ${field} ${port} is not in 1-65535`);
  }
  try {
    publicKeyLineOf(opts.hostKeyLine);
  } catch (err) {
    throw new Error(`edge-setup: hostKeyLine must be the gateway's OpenSSH public key line ("ssh-ed25519 AAAA..."): ${(err as Error).message}`);
  }
}
