// edge-setup NAME: prints what a device needs to join in tunnel mode.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { loadConfig } from '../config/load.js';
import { renderEdgeSetup, publicKeyLineOf } from '../tunnel/index.js';
import { parseHostPort } from '../util/net.js';
import { parseCommandArgs, requireOption } from './args.js';
import { UsageError, ExitError } from './errors.js';

/** A wildcard listen address is no address a device can dial: fall back to this host's name. */
function reachableName(listenHost: string): string {
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return listenHost;
  process.stderr.write(`note: the tunnel server listens on all addresses; using this host's name "${os.hostname()}" — pass --gateway HOST if devices know it by another name\n`);
  return os.hostname();
}

export async function edgeSetupCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { config: { type: 'string' }, gateway: { type: 'string' } }, true);
  const name = positionals[0];
  if (!name || positionals.length > 1) throw new UsageError('edge-setup needs exactly one connection NAME');
  const config = loadConfig(requireOption(values.config, '--config'));
  const connection = config.connections.find((c) => c.name === name);
  if (!connection) throw new ExitError(`no connection "${name}" in ${config.file}; known: ${config.connections.map((c) => c.name).join(', ')}`, 2);
  if (connection.mode !== 'tunnel') throw new ExitError(`connection "${name}" is in ${connection.mode} mode; edge-setup is for tunnel connections`, 2);
  if (!config.gateway.tunnel_host_key) {
    throw new ExitError(
      `the gateway has no tunnel host key yet: run \`mcp-ssh-gateway keygen --out DIR\` and set gateway.tunnel_host_key (full config form), then run edge-setup again`,
      2,
    );
  }
  const hostKeyFile = config.gateway.tunnel_host_key;
  const listen = parseHostPort(config.gateway.tunnel_listen);
  let gatewayClientKeyLine: string | undefined;
  try {
    gatewayClientKeyLine = readFileSync(`${connection.id_file}.pub`, 'utf8').trim();
  } catch {
    gatewayClientKeyLine = publicKeyLineOf(connection.privateKey);
  }
  process.stdout.write(
    renderEdgeSetup({
      name,
      port: connection.port,
      gatewayHost: values.gateway ?? reachableName(listen.host),
      tunnelPort: listen.port,
      hostKeyLine: publicKeyLineOf(readFileSync(hostKeyFile)),
      gatewayClientKeyLine,
    }),
  );
  if (!connection.edgePublicKeyLine) {
    process.stderr.write(`\nnote: "${name}" has no edge_public_key yet: add the device's public key line to the config, or the device cannot log in.\n`);
  }
  return 0;
}
