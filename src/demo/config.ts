// The demo fleet's gateway config, in the full form: tags, a policy (allow + deny + confirm), an action with
// typed parameters, pinned host keys, and the tunnel server for the device that dials in.
import type { Sshd } from './local-sshd.js';
import { fingerprintOf } from './local-sshd.js';

export const DIRECT = 'pi-direct';
export const TUNNEL = 'pi-tunnel';

/** Relative to the config file's folder, as the loader resolves them. */
export const GATEWAY_KEY = 'keys/gateway_ed25519';
export const TUNNEL_HOST_KEY = 'keys/tunnel_host_ed25519_key';
export const AUDIT_LOG = 'audit.log';

export const POLICY = {
  allow: ['^uname( -[a-z]+)?$', '^uptime$', '^hostname$', '^df -h( /[\\w./-]*)?$', '^cat /etc/os-release$', '^echo(?: [\\w.,!][\\w.,!-]*)*$'],
  deny: ['\\brm\\b', '^(shutdown|reboot|poweroff|halt)\\b'],
  confirm: ['^systemctl restart [\\w@.][\\w@.-]*$'],
};

/** POLICY in words, for the demo's fleet description; edit the two together. */
export const POLICY_SUMMARY = [
  'allow uname, uptime, hostname, df -h, cat /etc/os-release, echo; deny rm, shutdown/reboot;',
  'confirm systemctl restart; action tail_log(lines: integer 1-100, file: path under the device log folder)',
];

/** One action per device: a log tail whose parameters are typed (an integer and a path under the log folder). */
export function tailLogAction(logDir: string): Record<string, unknown> {
  return {
    tail_log: {
      description: 'Show the last lines of a log file under the device log folder',
      command: 'tail -n {{lines}} {{file}}',
      params: {
        lines: { type: 'integer', min: 1, max: 100, description: 'How many lines' },
        file: { type: 'path', roots: [logDir], default: `${logDir}/app.log`, description: 'Which log file' },
      },
    },
  };
}

export interface DemoConfigInput {
  direct: Sshd;
  tunnel: Sshd;
  tunnelListenPort: number;
  forwardPort: number;
  edgePublicKeyLine: string;
  logDirOf: (device: Sshd) => string;
}

export function demoConfig(input: DemoConfigInput): Record<string, unknown> {
  const { direct, tunnel } = input;
  return {
    gateway: {
      audit_log: AUDIT_LOG,
      tunnel_listen: `127.0.0.1:${input.tunnelListenPort}`,
      tunnel_host_key: TUNNEL_HOST_KEY,
      timeouts: { connect_s: 5, command_s: 20, keepalive_s: 5 },
    },
    connections: [
      {
        name: DIRECT,
        mode: 'direct',
        user: direct.user,
        host: direct.host,
        port: direct.port,
        id_file: GATEWAY_KEY,
        host_key: fingerprintOf(direct.hostKey.publicLine),
        tags: ['pi', 'lab'],
        policy: POLICY,
        actions: tailLogAction(input.logDirOf(direct)),
      },
      {
        name: TUNNEL,
        mode: 'tunnel',
        user: tunnel.user,
        host: '127.0.0.1',
        port: input.forwardPort,
        id_file: GATEWAY_KEY,
        host_key: fingerprintOf(tunnel.hostKey.publicLine),
        edge_public_key: input.edgePublicKeyLine,
        tags: ['pi', 'field'],
        policy: POLICY,
        actions: tailLogAction(input.logDirOf(tunnel)),
      },
    ],
  };
}
