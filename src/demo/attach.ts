// `demo --serve`: the exact snippets that attach a real MCP client (Claude Code, Claude Desktop/Cursor, the MCP
// Inspector) to the demo fleet, with absolute paths.
import { realpathSync } from 'node:fs';
import { shellQuote } from '../util/shell.js';
import { findExecutable } from './local-sshd.js';
import { MAIN_JS } from './serve-client.js';
import { DIRECT, TUNNEL } from './config.js';
import type { Fleet } from './fleet.js';

function word(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : shellQuote(value);
}

/** `node` when the node on PATH is this one, else this node's absolute path. */
function nodeCommand(): string {
  const onPath = findExecutable('node');
  try {
    if (onPath && realpathSync(onPath) === realpathSync(process.execPath)) return 'node';
  } catch {
    /* fall through */
  }
  return process.execPath;
}

export function attachInstructions(fleet: Fleet): string {
  const serveArgs = [MAIN_JS, 'serve', '--config', fleet.configPath];
  const serveLine = [nodeCommand(), ...serveArgs].map(word).join(' ');
  const desktop = { mcpServers: { 'demo-fleet': { command: process.execPath, args: serveArgs } } };
  return [
    `Demo fleet is up (loopback only), files in ${fleet.dir}`,
    `  ${DIRECT.padEnd(10)} direct  sshd on 127.0.0.1:${fleet.direct.port}`,
    `  ${TUNNEL.padEnd(10)} tunnel  sshd on 127.0.0.1:${fleet.tunnel.port}, dials the gateway's tunnel server on 127.0.0.1:${fleet.tunnelListenPort} (retried every second)`,
    '',
    `config:    ${fleet.configPath}`,
    `audit log: ${fleet.auditPath}`,
    '',
    'Attach a client; it starts its own `serve`, and pi-tunnel dials in within a second or two.',
    '',
    'Claude Code:',
    `  claude mcp add demo-fleet -- ${serveLine}`,
    '',
    'Claude Desktop (claude_desktop_config.json) or Cursor (.cursor/mcp.json):',
    ...JSON.stringify(desktop, null, 2).split('\n').map((l) => `  ${l}`),
    '',
    'MCP Inspector:',
    `  npx @modelcontextprotocol/inspector ${serveLine}`,
    '',
    `Try: list_connections; run_command {"connection":"${TUNNEL}","command":"uname -sr"}; run_action tail_log {"lines":5};`,
    '     run_on_many {"tags":["pi"],"command":"uptime"}; and something the policy refuses, like "rm -f /tmp/x".',
    `Only one serve at a time can hold the tunnel port 127.0.0.1:${fleet.tunnelListenPort} (the tunnel server lives inside serve).`,
    `Check the trail any time: ${[nodeCommand(), MAIN_JS, 'audit', 'verify', fleet.auditPath].map(word).join(' ')}`,
    'Close your client first, then press Ctrl-C here: every process and file above goes away (then: claude mcp remove demo-fleet).',
  ].join('\n');
}
