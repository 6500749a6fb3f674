// Streamable HTTP for remote MCP clients. Every request must carry a configured bearer token (compared by
// sha256 in constant time); the token's name becomes the caller's principal in the audit log.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createMcpHandler } from '@modelcontextprotocol/server';
import { toNodeHandler, hostHeaderValidation } from '@modelcontextprotocol/node';
import { NoiseBudget } from '../audit/noise.js';
import type { Gateway } from '../gateway/gateway.js';
import type { ApprovalDesk } from './approval.js';
import { createMcpServer } from './server.js';
import { isLoopbackHost } from '../util/net.js';
import { logger } from '../util/log.js';

export interface HttpToken {
  name: string;
  sha256: Buffer;
}

export interface HttpEndpoint {
  url: string;
  close(): Promise<void>;
}

/** The name of the token presented in `Authorization: Bearer ...`, or undefined. */
export function principalFor(header: string | undefined, tokens: HttpToken[]): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const presented = createHash('sha256').update(match[1]).digest();
  let found: string | undefined;
  for (const token of tokens) {
    // Check every token (no early exit) so timing says nothing about which one nearly matched.
    if (timingSafeEqual(presented, token.sha256)) found ??= token.name;
  }
  return found;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

function refuse(res: ServerResponse, status: number, message: string, extraHeaders: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...extraHeaders });
  res.end(JSON.stringify({ error: message }));
}

export async function startHttp(gateway: Gateway, desk: ApprovalDesk, listen: { host: string; port: number }, tokens: HttpToken[]): Promise<HttpEndpoint> {
  if (tokens.length === 0) throw new Error('HTTP needs at least one bearer token: add gateway.http.tokens (token_env, token_file or token_sha256)');
  const handler = createMcpHandler((ctx) => createMcpServer(gateway, desk, { transport: 'http', era: ctx.era, principal: ctx.authInfo?.clientId }));
  // Bodies up to 16 MiB: write_file content (8 MiB, base64 in JSON) must fit; the SDK's default is 4 MiB.
  const serve = toNodeHandler(handler, { onerror: (err) => logger.warn(`HTTP MCP: ${err.message}`), maxRequestBodySize: MAX_BODY_BYTES });
  // DNS-rebinding guard for loopback listeners: a web page must not reach us through a hostname it controls.
  const listenName = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const checkHost = isLoopbackHost(listen.host) ? hostHeaderValidation([...new Set(['localhost', '127.0.0.1', '[::1]', listenName])]) : undefined;
  // Anyone who can reach the port can fail to log in, as fast as they like: a budget keeps that from flooding the
  // audit log until rotation drops real history.
  const authFailures = new NoiseBudget(20, 10_000, (summary) => {
    void gateway.record({ event: 'http_auth_failed_suppressed', ...summary }).catch(() => undefined);
  });

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/mcp') return refuse(res, 404, 'not found: the MCP endpoint is /mcp');
    if (checkHost && !checkHost(req, res)) return;
    const principal = principalFor(req.headers.authorization, tokens);
    if (!principal) {
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      if (authFailures.admit('http_auth_failed', peer)) void gateway.record({ event: 'http_auth_failed', peer }).catch(() => undefined);
      return refuse(res, 401, 'missing or unknown bearer token', { 'www-authenticate': 'Bearer realm="mcp-ssh-gateway"' });
    }
    (req as IncomingMessage & { auth?: unknown }).auth = { token: '[redacted]', clientId: principal, scopes: [] };
    serve(req as never, res).catch((err: Error) => {
      logger.warn(`HTTP request failed: ${err.message}`);
      if (!res.headersSent) refuse(res, 500, 'internal error');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}/mcp`,
    close: async () => {
      authFailures.flush();
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
