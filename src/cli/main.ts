#!/usr/bin/env node
// The mcp-ssh-gateway command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
import { VERSION } from '../version.js';
import { serveCommand } from './serve.js';
import { checkCommand } from './check.js';
import { keygenCommand } from './keygen.js';
import { auditCommand } from './audit.js';
import { edgeSetupCommand } from './edge-setup.js';
import { demoCommand } from './demo.js';
import { UsageError, ExitError } from './errors.js';
import { ConfigError } from '../config/load.js';

const HELP = `mcp-ssh-gateway ${VERSION} — an MCP server that gives AI agents a narrow, audited SSH arm into edge devices.

Usage:
  mcp-ssh-gateway serve --config FILE [--http HOST:PORT] [--tunnel-listen HOST:PORT]
        Serve MCP over stdio (default) or Streamable HTTP (bearer tokens from gateway.http.tokens). Starts the tunnel server when a connection uses tunnel mode.
  mcp-ssh-gateway check --config FILE [--probe]
        Validate the config (every problem at once, with its JSON path); --probe also connects to each device.
  mcp-ssh-gateway audit verify FILE [FILE...] [--head SEQ:HASH]
        Verify the audit log's hash chain (rotated files included); exit 1 and the first broken record if tampered.
        Prints the chain's head; --head checks a head noted earlier is still there (nothing cut off or rewritten).
  mcp-ssh-gateway edge-setup NAME --config FILE [--gateway HOST]
        Print what a device needs to join in tunnel mode: the ssh -N -R command, the gateway's known_hosts line,
        and a systemd unit that keeps the tunnel up.
  mcp-ssh-gateway keygen --out DIR
        Make an ed25519 host key for the tunnel server and a client key pair.
  mcp-ssh-gateway demo [--serve]
        Run the whole product on this machine, loopback only: two real sshd devices (one direct, one behind a
        real ssh -N -R tunnel), a scripted MCP session through serve, the audit log and its verification; exit 0
        only if every step behaved as expected. --serve keeps the fleet up and prints how to attach a real MCP
        client (Claude Code, Claude Desktop/Cursor, the MCP Inspector) until Ctrl-C. Needs OpenSSH (openssh-server).
  mcp-ssh-gateway --help | --version

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. Logs go to stderr.
`;

type Handler = (args: string[]) => Promise<number>;

const commands: Record<string, Handler> = {
  serve: serveCommand,
  check: checkCommand,
  keygen: keygenCommand,
  audit: auditCommand,
  'edge-setup': edgeSetupCommand,
  demo: demoCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const handler = commands[command];
  if (!handler) throw new UsageError(`unknown command "${command}"`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  return handler(rest);
}


main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`mcp-ssh-gateway: ${err.message}\nRun "mcp-ssh-gateway --help" for usage.\n`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`mcp-ssh-gateway: invalid config ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof ExitError) {
      process.stderr.write(`mcp-ssh-gateway: ${err.message}\n`);
      process.exitCode = err.code;
    } else {
      process.stderr.write(`mcp-ssh-gateway: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
