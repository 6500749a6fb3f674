// Starts the embedded tunnel server for the config's tunnel connections and ties its events to the gateway:
// every tunnel event is audited, and a tunnel that goes down drops the SSH connection that ran through it.
import { readFileSync } from 'node:fs';
import type { Gateway } from './gateway.js';
import { TunnelServer } from '../tunnel/index.js';
import { isLoopbackHost } from '../util/net.js';
import { logger } from '../util/log.js';

export async function startTunnelServer(gateway: Gateway, listen: { host: string; port: number }): Promise<TunnelServer | undefined> {
  const config = gateway.config;
  const tunnelConnections = config.connections.filter((c) => c.mode === 'tunnel');
  // Without any edge key no device could log in: don't listen at all (config load reported those entries).
  if (!tunnelConnections.some((c) => c.edgePublicKeyLine) || !config.gateway.tunnel_host_key) return undefined;
  if (!isLoopbackHost(listen.host)) logger.warn(`tunnel server listens on ${listen.host}:${listen.port}, beyond loopback (as configured)`);
  const server = new TunnelServer({
    listen,
    hostKey: readFileSync(config.gateway.tunnel_host_key),
    endpoints: tunnelConnections.map((c) => ({ name: c.name, port: c.port, edgePublicKey: c.edgePublicKeyLine, bindLoopback: c.bind_loopback })),
    keepaliveIntervalMs: (config.gateway.timeouts?.keepalive_s ?? 15) * 1000,
    onEvent: (event) => {
      void gateway.record(event).catch(() => undefined);
      if (event.event === 'tunnel_auth_failed' || event.event === 'forward_rejected' || event.event === 'tunnel_request_refused') {
        logger.warn(`tunnel: ${event.event} ${event.connection ?? event.user ?? ''} from ${event.peer}: ${event.reason ?? ''}`);
      }
    },
  });
  server.on('down', (name: string) => gateway.connections.get(name)?.disconnect());
  const bound = await server.start();
  gateway.attachTunnels(server);
  for (const c of tunnelConnections.filter((t) => !t.edgePublicKeyLine)) {
    logger.warn(`tunnel connection "${c.name}" has no edge_public_key: no device can log in for it (add the device's public key line)`);
  }
  logger.info(`tunnel server listening on ${bound.host}:${bound.port} for ${tunnelConnections.length} tunnel connection(s)`);
  return server;
}
