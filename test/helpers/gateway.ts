// Starts the real gateway CLI (`serve`) as a child process and connects the real MCP SDK client over stdio.
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import type { Sshd } from './sshd.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface GatewayUnderTest {
  client: Client;
  dir: string;
  configPath: string;
  auditPath: string;
  stderr(): string;
  /** The gateway process id (for fault tests). */
  pid(): number | undefined;
  close(): Promise<void>;
}

/** A direct connection entry for a test sshd, host key pinned. */
export function directConnection(sshd: Sshd, name = 'dev1', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    mode: 'direct',
    user: sshd.user,
    host: sshd.host,
    port: sshd.port,
    id_file: sshd.clientKey.privatePath,
    host_key: sshd.hostKeyFingerprint,
    ...extra,
  };
}

export async function writeConfig(config: unknown, dir?: string): Promise<{ dir: string; configPath: string }> {
  const folder = dir ?? (await mkdtemp(path.join(tmpdir(), 'mcpgw-test-')));
  const configPath = path.join(folder, 'connections.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  return { dir: folder, configPath };
}

export async function startGateway(
  config: unknown,
  options: {
    env?: Record<string, string>;
    clientName?: string;
    capabilities?: Record<string, unknown>;
    /** Runs before connect, e.g. to register an elicitation handler. */
    setup?: (client: Client) => void;
    /** 'modern' negotiates the 2026-07-28 protocol; the SDK client's default is the 2025 era. */
    era?: 'legacy' | 'modern';
  } = {},
): Promise<GatewayUnderTest> {
  const { dir, configPath } = await writeConfig(config);
  let stderr = '';
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--config', configPath],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...options.env },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const client = new Client(
    { name: options.clientName ?? 'gateway-test', version: '1.0.0' },
    { capabilities: options.capabilities ?? {}, versionNegotiation: { mode: options.era === 'modern' ? 'auto' : 'legacy' } },
  );
  options.setup?.(client);
  await client.connect(transport);
  return {
    client,
    dir,
    configPath,
    auditPath: path.join(dir, 'audit.log'),
    stderr: () => stderr,
    pid: () => transport.pid ?? undefined,
    close: async () => {
      await client.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Calls a tool and returns its structured result, failing loudly if the call was a tool error. */
export async function callOk<T = Record<string, unknown>>(gw: GatewayUnderTest, name: string, args: Record<string, unknown>): Promise<T> {
  const result = await gw.client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
  return result.structuredContent as T;
}

/** Calls a tool that is expected to fail and returns its error text. */
export async function callError(gw: GatewayUnderTest, name: string, args: Record<string, unknown>): Promise<string> {
  const result = await gw.client.callTool({ name, arguments: args });
  if (!result.isError) throw new Error(`${name} unexpectedly succeeded: ${JSON.stringify(result.structuredContent)}`);
  return (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
}
