// Operator logs go to stderr: in stdio mode stdout belongs to MCP. Never log secrets or command output.
type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const threshold = order[(process.env.MCP_SSH_GATEWAY_LOG as Level) ?? 'info'] ?? order.info;

function write(level: Level, message: string): void {
  if (order[level] < threshold) return;
  process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`);
}

export const logger = {
  debug: (m: string) => write('debug', m),
  info: (m: string) => write('info', m),
  warn: (m: string) => write('warn', m),
  error: (m: string) => write('error', m),
};
