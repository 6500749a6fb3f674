// serve: MCP over stdio (or HTTP), with the tunnel server when any connection uses tunnel mode.
import { serveStdio, StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { loadConfig } from '../config/load.js';
import { Gateway } from '../gateway/gateway.js';
import { createMcpServer } from '../mcp/server.js';
import { ApprovalDesk } from '../mcp/approval.js';
import { startHttp } from '../mcp/http.js';
import { startTunnelServer } from '../gateway/tunnels.js';
import { parseHostPort } from '../util/net.js';
import { UsageError } from './errors.js';
import { AuditLog } from '../audit/index.js';
import { parseCommandArgs, requireOption } from './args.js';
import { headText } from './audit.js';
import { logger } from '../util/log.js';
import { VERSION } from '../version.js';

const STDIO_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

function listenFlag(flag: string, value: string): { host: string; port: number } {
  try {
    return parseHostPort(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, {
    config: { type: 'string' },
    http: { type: 'string' },
    'tunnel-listen': { type: 'string' },
  });
  const config = loadConfig(requireOption(values.config, '--config'));
  // Bad flags are usage errors (exit 2), found before anything is started or audited.
  const httpListen = values.http ?? config.gateway.http?.listen;
  const http = httpListen ? listenFlag('--http', httpListen) : undefined;
  const tunnelListen = listenFlag('--tunnel-listen', values['tunnel-listen'] ?? config.gateway.tunnel_listen);
  // A stray rejected promise (a device or client misbehaving in a way nothing awaited) must not take every other
  // session down with it: report it loudly and keep serving.
  process.on('unhandledRejection', (reason) => {
    logger.error(`unhandled rejection (the gateway keeps serving): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  });
  for (const warning of config.warnings) logger.warn(warning);
  const audit = await AuditLog.open(config.gateway.audit_log, {
    fsync: config.gateway.audit_fsync ?? 'always',
    maxBytes: config.gateway.audit_max_bytes,
    keep: config.gateway.audit_keep,
  });
  const gateway = new Gateway(config, audit);
  await gateway.record({ event: 'gateway_start', version: VERSION, pid: process.pid, transport: http ? 'http' : 'stdio' });
  await gateway.record({ event: 'config_loaded', file: config.file, sha256: config.sha256, connections: config.connections.length });

  let tunnels: Awaited<ReturnType<typeof startTunnelServer>>;
  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> =>
    (stopping ??= (async () => {
      logger.info(`stopping (${reason})`);
      await tunnels?.stop();
      await gateway.close();
      await gateway.record({ event: 'gateway_stop', reason }).catch(() => undefined);
      await audit.close();
      // An anchor for the operator's own logs: checked later, it catches records cut from the end or a rewritten chain.
      const head = headText(audit.lastRecord.seq, audit.lastRecord.hash);
      logger.info(`audit log head ${head}; "mcp-ssh-gateway audit verify ${audit.path} --head ${head}" checks it later`);
    })());

  let transportClosed: () => void = () => undefined;
  let closeTransport: () => Promise<void>;
  try {
    // A port already in use (tunnel or HTTP) ends the start; the audit log then says so and is closed cleanly.
    tunnels = await startTunnelServer(gateway, tunnelListen);
    const desk = new ApprovalDesk();
    if (http) {
      const endpoint = await startHttp(gateway, desk, http, config.gateway.httpTokens);
      logger.info(`mcp-ssh-gateway ${VERSION} serving ${config.connections.length} connection(s) at ${endpoint.url}; audit log ${config.gateway.audit_log}`);
      closeTransport = endpoint.close;
    } else {
      // The SDK's default 10 MiB message limit closes the transport on a larger message and leaves the gateway deaf;
      // 64 MiB admits any valid request (inputs are capped far below by the tool schemas, which answer with an error).
      const transport = new StdioServerTransport(process.stdin, process.stdout, { maxBufferSize: STDIO_MAX_MESSAGE_BYTES });
      const handle = serveStdio((ctx) => createMcpServer(gateway, desk, { transport: 'stdio', era: ctx.era }), {
        transport,
        onerror: (err) => logger.warn(`MCP transport: ${err.message}`),
      });
      // If the transport closes on its own (e.g. a message beyond even that limit), stop instead of idling deaf.
      const onClose = transport.onclose;
      transport.onclose = () => {
        onClose?.();
        transportClosed();
      };
      logger.info(`mcp-ssh-gateway ${VERSION} serving ${config.connections.length} connection(s) over stdio; audit log ${config.gateway.audit_log}`);
      closeTransport = () => handle.close();
    }
  } catch (err) {
    await stop(`failed to start: ${(err as Error).message}`);
    throw err;
  }

  await new Promise<void>((resolve) => {
    transportClosed = resolve;
    if (!http) {
      // In stdio mode the client owns our lifetime: when it closes stdin, we are done.
      process.stdin.once('end', () => resolve());
      process.stdin.once('close', () => resolve());
    }
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await closeTransport().catch(() => undefined);
  await stop('client disconnected or signal');
  return 0;
}
