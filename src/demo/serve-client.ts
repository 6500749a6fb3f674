// The agent's side: `serve` started over stdio as a child process, driven by the real MCP SDK client.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { VERSION } from '../version.js';
import type { Cleanup } from './cleanup.js';

/** This package's CLI entry point (dist/cli/main.js). */
export const MAIN_JS = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface ToolAnswer<T = Record<string, unknown>> {
  isError: boolean;
  /** The text content (the summary, or the error message the agent reads). */
  text: string;
  structured: T;
}

export interface ServeSession {
  call<T = Record<string, unknown>>(tool: string, args: Record<string, unknown>): Promise<ToolAnswer<T>>;
  /** The gateway's stderr so far (shown when something goes wrong). */
  stderr(): string;
  /** Closes stdin, so serve stops the way it does when a client goes away. */
  close(): Promise<void>;
}

export async function startServe(configPath: string, cleanup: Cleanup): Promise<ServeSession> {
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: build the package first (npx tsc -p .)`);
  let stderr = '';
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MAIN_JS, 'serve', '--config', configPath],
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  const client = new Client({ name: 'mcp-ssh-gateway-demo', version: VERSION }, { capabilities: {} });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await client.close().catch(() => undefined);
  };
  cleanup.add('stop serve', close, () => {
    const pid = transport.pid;
    if (pid !== null) process.kill(pid, 'SIGKILL');
  });
  await client.connect(transport);
  return {
    async call<T>(tool: string, args: Record<string, unknown>): Promise<ToolAnswer<T>> {
      const result = await client.callTool({ name: tool, arguments: args });
      const content = (result.content ?? []) as { type: string; text?: string }[];
      return {
        isError: result.isError === true,
        text: content.map((c) => c.text ?? '').join('\n'),
        structured: (result.structuredContent ?? {}) as T,
      };
    },
    stderr: () => stderr,
    close,
  };
}
