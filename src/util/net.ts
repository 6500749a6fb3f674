// Small address helpers shared by config checks and listeners.
import net from 'node:net';

export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (net.isIPv4(bare)) return bare.startsWith('127.');
  if (net.isIPv6(bare)) return bare === '::1';
  return false;
}

/** Splits "host:port" or "[v6]:port". */
export function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!match) throw new Error(`expected HOST:PORT, got "${value}"`);
  const port = Number(match[4]);
  if (port > 65_535) throw new Error(`port ${port} is out of range in "${value}"`);
  return { host: match[2] ?? match[3], port };
}
