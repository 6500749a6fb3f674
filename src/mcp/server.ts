// Builds the MCP server: one McpServer per client connection, all sharing the same Gateway.
import { McpServer } from '@modelcontextprotocol/server';
import type { Gateway } from '../gateway/gateway.js';
import { makeToolContext, type CallerIdentity } from './context.js';
import { registerListConnections } from './tools/list-connections.js';
import { registerRunCommand } from './tools/run-command.js';
import { registerGetHistory } from './tools/get-history.js';
import { registerRunOnMany } from './tools/run-on-many.js';
import { registerRunAction } from './tools/run-action.js';
import { registerReadFile, registerWriteFile, registerListDirectory, registerUploadFile, registerDownloadFile } from './tools/files.js';
import { ApprovalDesk } from './approval.js';
import { makeAuthorizer } from './guard.js';
import { VERSION } from '../version.js';

export function createMcpServer(
  gateway: Gateway,
  desk: ApprovalDesk,
  caller: Omit<CallerIdentity, 'client_name' | 'client_version'>,
): McpServer {
  const server = new McpServer(
    { name: 'mcp-ssh-gateway', version: VERSION },
    {
      instructions:
        'SSH gateway to a fleet of devices. Call list_connections first to learn connection names and state, then run_command. ' +
        'Non-zero exit codes are results, not errors; isError results explain what to do next. ' +
        'Prefer run_action where an action fits: actions are the operator-approved way to change things.',
      ...desk.serverOptions,
    },
  );
  const context = makeToolContext(gateway, server, makeAuthorizer(gateway, server, desk), caller);
  registerListConnections(server, context);
  registerRunCommand(server, context);
  registerRunOnMany(server, context);
  registerRunAction(server, context);
  registerGetHistory(server, context);
  registerReadFile(server, context);
  registerWriteFile(server, context);
  registerListDirectory(server, context);
  registerUploadFile(server, context);
  registerDownloadFile(server, context);
  return server;
}
