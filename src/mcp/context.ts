// What every tool handler gets: the gateway, and a wrapper that audits the call and turns failures into
// isError results, so no tool can forget either.
import type { CallToolResult, McpServer, ServerContext } from '@modelcontextprotocol/server';
import type { Gateway } from '../gateway/gateway.js';
import { errorResult } from './result.js';
import { NeedsApproval } from './approval.js';
import type { Authorizer } from './guard.js';

export interface CallerIdentity {
  client_name?: string;
  client_version?: string;
  /** HTTP principal (bearer token name), when served over HTTP. */
  principal?: string;
  transport: 'stdio' | 'http';
  /** MCP protocol era of this connection: 'legacy' (2025) or 'modern' (2026-07-28). */
  era?: 'legacy' | 'modern';
}

export type ToolHandler<A> = (args: A, ctx: ServerContext, who: CallerIdentity) => Promise<CallToolResult>;

export interface ToolContext {
  gateway: Gateway;
  /** The policy step; throws a refusal, or NeedsApproval to ask a human. */
  authorize: Authorizer;
  audited<A>(tool: string, handler: ToolHandler<A>): (args: A, ctx: ServerContext) => Promise<CallToolResult>;
}

/** Fields of a tool call worth auditing: the target and command, never content, stdin or env values. */
function auditableArgs(args: unknown): Record<string, unknown> {
  if (args === null || typeof args !== 'object') return {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(args as Record<string, unknown>)) {
    if (key === 'content' || key === 'stdin') out[`${key}_bytes`] = typeof value === 'string' ? Buffer.byteLength(value) : undefined;
    else if (key === 'env' && value && typeof value === 'object') out.env_names = Object.keys(value);
    else out[key] = value;
  }
  return out;
}

export function makeToolContext(
  gateway: Gateway,
  server: McpServer,
  authorize: Authorizer,
  base: Omit<CallerIdentity, 'client_name' | 'client_version'>,
): ToolContext {
  const identify = (): CallerIdentity => {
    const client = server.server.getClientVersion();
    return { ...base, client_name: client?.name, client_version: client?.version };
  };
  return {
    gateway,
    authorize,
    audited: (tool, handler) => async (args, ctx) => {
      const who = identify();
      // Not awaited yet: the handler's own first record (command_start) then shares this write.
      // Awaited, and synced to disk, before anything is returned: no result leaves the gateway unaudited.
      const called = gateway.record({ event: 'tool_call', tool, client: who, ...auditableArgs(args) }, { durable: false });
      called.catch(() => undefined);
      try {
        const result = await handler(args, ctx, who);
        await called;
        await gateway.syncAudit(); // usually a no-op: the handler's last record (command_end) was durable
        return result;
      } catch (err) {
        await called.catch(() => undefined);
        await gateway.syncAudit().catch(() => undefined);
        if (err instanceof NeedsApproval) return err.result;
        return errorResult(err);
      }
    },
  };
}
