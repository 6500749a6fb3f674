// Reads connections.json, validates it whole, and resolves it into what the gateway runs on.
// Every problem is collected (never just the first), each with its JSON path and how to fix it.
import { readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { utils as sshUtils } from '../ssh/ssh2.js';
import {
  connectionSchema,
  fullConfigSchema,
  gatewaySchema,
  type ConnectionConfig,
  type GatewayConfig,
  type PolicyConfig,
} from './schema.js';
import { isLoopbackHost } from '../util/net.js';
import { policyWarnings } from '../policy/policy.js';

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(`${file}: ${issues.length} problem(s):\n` + issues.map((i) => `  ${i.path || '(top level)'}: ${i.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

export interface ResolvedConnection extends ConnectionConfig {
  /** Absolute paths, resolved against the config file's folder. */
  id_file: string;
  known_hosts?: string;
  privateKey: Buffer;
  passphrase?: string;
  /** tunnel mode: the device's login key as an OpenSSH public key line. */
  edgePublicKeyLine?: string;
  /** Effective policy: the connection's own, else the gateway default, else none (everything runs). */
  effectivePolicy?: PolicyConfig;
}

export interface LoadedConfig {
  file: string;
  dir: string;
  sha256: string;
  form: 'array' | 'full';
  gateway: GatewayConfig & { audit_log: string; tunnel_listen: string; httpTokens: { name: string; sha256: Buffer }[] };
  connections: ResolvedConnection[];
  warnings: string[];
}

export function formatPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

function zodIssues(error: z.ZodError, prefix: (string | number)[]): ConfigIssue[] {
  return error.issues.flatMap((issue): ConfigIssue[] => {
    const base = [...prefix, ...(issue.path as (string | number)[])];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        path: formatPath([...base, key]),
        message: `unknown field "${key}": remove it or fix its spelling (see schema/connections.schema.json)`,
      }));
    }
    if (issue.code === 'invalid_value' && 'values' in issue) {
      return [{ path: formatPath(base), message: `must be one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` }];
    }
    return [{ path: formatPath(base), message: issue.message }];
  });
}

/** Parses JSON and reports a syntax error with its line and column. */
function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const position = /position (\d+)/.exec(message);
    if (position) {
      const offset = Number(position[1]);
      const before = text.slice(0, offset).split('\n');
      throw new ConfigError(file, [
        { path: '', message: `not valid JSON at line ${before.length}, column ${before[before.length - 1].length + 1}: ${message}` },
      ]);
    }
    throw new ConfigError(file, [{ path: '', message: `not valid JSON: ${message}` }]);
  }
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(absolute, [{ path: '', message: `cannot read the config file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  const raw = parseJson(text, absolute);
  const dir = path.dirname(absolute);
  const issues: ConfigIssue[] = [];

  // Pick the form first so errors point into the right shape instead of a vague "no union member matched".
  // Each connection is validated on its own, so a schema error in one never hides the file/key problems of
  // the others: every problem in the file is reported in one go.
  const form = Array.isArray(raw) ? 'array' : 'full';
  let gateway: GatewayConfig = {};
  let gatewayParsed = true;
  let rawConnections: unknown[] = [];
  let connectionsPrefix: (string | number)[] = [];
  if (form === 'array') {
    rawConnections = raw as unknown[];
  } else {
    if (raw === null || typeof raw !== 'object') {
      throw new ConfigError(absolute, [{ path: '', message: 'expected a JSON array of connections or an object { "gateway": {...}, "connections": [...] }' }]);
    }
    const parsed = fullConfigSchema.extend({ connections: z.array(z.unknown()) }).safeParse(raw);
    if (parsed.success) {
      gateway = parsed.data.gateway;
      rawConnections = parsed.data.connections;
    } else {
      issues.push(...zodIssues(parsed.error, []));
      const partial = raw as { gateway?: unknown; connections?: unknown };
      const gatewayOnly = gatewaySchema.safeParse(partial.gateway ?? {});
      if (gatewayOnly.success) gateway = gatewayOnly.data;
      else gatewayParsed = false;
      rawConnections = Array.isArray(partial.connections) ? partial.connections : [];
    }
    connectionsPrefix = ['connections'];
  }
  const entries: { index: number; connection: ConnectionConfig }[] = [];
  rawConnections.forEach((rc, index) => {
    const parsed = connectionSchema.safeParse(rc);
    if (parsed.success) entries.push({ index, connection: parsed.data });
    else issues.push(...zodIssues(parsed.error, [...connectionsPrefix, index]));
  });

  const resolve = (p: string): string => path.resolve(dir, p.startsWith('~/') ? path.join(env.HOME ?? '', p.slice(2)) : p);
  const resolvedGateway = resolveGateway(gateway, resolve, dir, env, issues);
  const resolvedEntries = entries.map(({ index, connection }) => ({
    index,
    connection: resolveConnection(connection, [...connectionsPrefix, index], resolve, resolvedGateway, env, issues),
  }));
  const resolved = resolvedEntries.map((e) => e.connection);
  checkAcrossConnections(resolvedEntries, connectionsPrefix, issues);
  // The tunnel server needs a host key only once some device can log in (has an edge_public_key). Tunnel entries
  // without one — the original array form has no place for it — load, are reported, and the rest keeps working.
  if (gatewayParsed && resolved.some((c) => c.mode === 'tunnel' && c.edgePublicKeyLine) && !resolvedGateway.tunnel_host_key) {
    issues.push({
      path: 'gateway.tunnel_host_key',
      message:
        'tunnel connections with an edge_public_key need the tunnel server host key: run `mcp-ssh-gateway keygen --out DIR` and set gateway.tunnel_host_key to DIR/tunnel_host_ed25519_key',
    });
  }
  if (issues.length > 0) throw new ConfigError(absolute, issues);

  return {
    file: absolute,
    dir,
    sha256: createHash('sha256').update(text).digest('hex'),
    form,
    gateway: resolvedGateway,
    connections: resolved,
    warnings: [
      ...(resolvedGateway.default_policy ? policyWarnings(resolvedGateway.default_policy).map((w) => `gateway.default_policy.${w}`) : []),
      ...collectWarnings(resolved, connectionsPrefix),
    ],
  };
}

function resolveGateway(
  gateway: GatewayConfig,
  resolve: (p: string) => string,
  dir: string,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
): LoadedConfig['gateway'] {
  const out: LoadedConfig['gateway'] = {
    ...gateway,
    audit_log: resolve(gateway.audit_log ?? path.join(dir, 'audit.log')),
    tunnel_listen: gateway.tunnel_listen ?? '127.0.0.1:2222',
    httpTokens: resolveHttpTokens(gateway, resolve, env, issues),
  };
  if (gateway.tunnel_host_key) {
    out.tunnel_host_key = resolve(gateway.tunnel_host_key);
    checkPrivateKeyFile(out.tunnel_host_key, undefined, 'gateway.tunnel_host_key', issues);
  }
  if (gateway.known_hosts) {
    out.known_hosts = resolve(gateway.known_hosts);
    checkReadable(out.known_hosts, 'gateway.known_hosts', issues);
  }
  if (gateway.staging_dir) {
    out.staging_dir = resolve(gateway.staging_dir);
    checkPrivateFolder(out.staging_dir, 'gateway.staging_dir', issues);
  }
  if (gateway.default_policy) checkPolicyPatterns(gateway.default_policy, 'gateway.default_policy', issues);
  return out;
}

/** Bearer tokens are kept only as sha256 digests; the raw value comes from an env var or file, never the config. */
function resolveHttpTokens(gateway: GatewayConfig, resolve: (p: string) => string, env: NodeJS.ProcessEnv, issues: ConfigIssue[]): { name: string; sha256: Buffer }[] {
  const tokens: { name: string; sha256: Buffer }[] = [];
  (gateway.http?.tokens ?? []).forEach((t, i) => {
    const at = `gateway.http.tokens[${i}]`;
    const sources = [t.token_env, t.token_file, t.token_sha256].filter((v) => v !== undefined).length;
    if (sources !== 1) {
      issues.push({ path: at, message: 'give exactly one of token_env (an environment variable name), token_file, or token_sha256' });
      return;
    }
    let raw: string | undefined;
    if (t.token_env !== undefined) {
      raw = env[t.token_env];
      if (!raw) issues.push({ path: `${at}.token_env`, message: `environment variable ${t.token_env} is not set: export it before starting the gateway` });
    } else if (t.token_file !== undefined) {
      try {
        raw = readFileSync(resolve(t.token_file), 'utf8').trim();
      } catch (err) {
        issues.push({ path: `${at}.token_file`, message: `cannot read ${resolve(t.token_file)}: ${(err as NodeJS.ErrnoException).code}` });
      }
    }
    if (raw !== undefined && raw.length < 16) {
      issues.push({ path: at, message: 'token is shorter than 16 characters: use a long random token (e.g. openssl rand -hex 32)' });
      return;
    }
    const sha256 = t.token_sha256 !== undefined ? Buffer.from(t.token_sha256, 'hex') : raw ? createHash('sha256').update(raw).digest() : undefined;
    // The name is the principal an approval is bound to: two tokens with one name would share approvals.
    if (tokens.some((other) => other.name === t.name)) issues.push({ path: `${at}.name`, message: `token name "${t.name}" is used twice; each token needs its own name` });
    else if (sha256) tokens.push({ name: t.name, sha256 });
  });
  return tokens;
}

function resolveConnection(
  c: ConnectionConfig,
  at: (string | number)[],
  resolve: (p: string) => string,
  gateway: GatewayConfig,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
): ResolvedConnection {
  const where = (field: string): string => formatPath([...at, field]);
  const out: ResolvedConnection = { ...c, id_file: resolve(c.id_file), privateKey: Buffer.alloc(0) };
  if (c.known_hosts) {
    out.known_hosts = resolve(c.known_hosts);
    checkReadable(out.known_hosts, where('known_hosts'), issues);
  }
  out.passphrase = resolvePassphrase(c, at, resolve, env, issues);
  out.privateKey = checkPrivateKeyFile(out.id_file, out.passphrase, where('id_file'), issues) ?? Buffer.alloc(0);
  if (c.policy) checkPolicyPatterns(c.policy, where('policy'), issues);
  out.effectivePolicy = c.policy ?? gateway.default_policy;

  if (c.mode === 'tunnel') {
    if (!isLoopbackHost(c.host)) {
      issues.push({ path: where('host'), message: `a tunnel connection is reached through the gateway itself: host must be loopback ("127.0.0.1"), not "${c.host}"` });
    }
    if (c.edge_public_key) out.edgePublicKeyLine = readEdgePublicKey(c.edge_public_key, resolve, where('edge_public_key'), issues);
  } else {
    for (const field of ['edge_public_key', 'bind_loopback'] as const) {
      if (c[field] !== undefined) issues.push({ path: where(field), message: `only tunnel connections use ${field}: remove it or set "mode": "tunnel"` });
    }
  }
  return out;
}

function resolvePassphrase(
  c: ConnectionConfig,
  at: (string | number)[],
  resolve: (p: string) => string,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
): string | undefined {
  if (c.passphrase_env && c.passphrase_file) {
    issues.push({ path: formatPath([...at, 'passphrase_file']), message: 'set passphrase_env or passphrase_file, not both' });
    return undefined;
  }
  if (c.passphrase_env) {
    const value = env[c.passphrase_env];
    if (value === undefined || value === '') {
      issues.push({ path: formatPath([...at, 'passphrase_env']), message: `environment variable ${c.passphrase_env} is not set: export it before starting the gateway` });
    }
    return value;
  }
  if (c.passphrase_file) {
    const file = resolve(c.passphrase_file);
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      issues.push({ path: formatPath([...at, 'passphrase_file']), message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}` });
    }
  }
  return undefined;
}

/**
 * The staging folder is checked once per transfer and then used by path: another local user who could write in
 * it could swap a file for a symlink in between and read or write outside it. So only the gateway's user may.
 */
function checkPrivateFolder(dir: string, at: string, issues: ConfigIssue[]): void {
  let info;
  try {
    info = statSync(dir);
  } catch {
    return; // a missing folder is reported when a transfer needs it
  }
  const mode = info.mode & 0o777;
  if (!info.isDirectory()) issues.push({ path: at, message: `${dir} is not a folder` });
  else if ((mode & 0o022) !== 0) {
    issues.push({ path: at, message: `${dir} is writable by group or others (mode ${mode.toString(8)}), who could swap its files for symlinks during a transfer: run \`chmod 700 ${dir}\`` });
  } else if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
    issues.push({ path: at, message: `${dir} belongs to another user (uid ${info.uid}), who could swap its files for symlinks during a transfer: use a folder of the gateway's own user` });
  }
}

function checkReadable(file: string, at: string, issues: ConfigIssue[]): void {
  try {
    readFileSync(file);
  } catch (err) {
    issues.push({ path: at, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
}

/** Reads and parses a private key, refusing files that group or others can read (as OpenSSH does). */
function checkPrivateKeyFile(file: string, passphrase: string | undefined, at: string, issues: ConfigIssue[]): Buffer | undefined {
  let data: Buffer;
  try {
    const mode = statSync(file).mode & 0o777;
    data = readFileSync(file);
    if ((mode & 0o077) !== 0) {
      issues.push({ path: at, message: `private key ${file} is readable by group or others (mode ${mode.toString(8)}): run \`chmod 600 ${file}\`` });
      return undefined;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? 'no such file (relative paths are relative to the config file folder)' : code;
    issues.push({ path: at, message: `cannot read private key ${file}: ${hint}` });
    return undefined;
  }
  const parsed = sshUtils.parseKey(data, passphrase);
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase|bad decrypt/i.test(parsed.message);
    issues.push({
      path: at,
      message: encrypted
        ? `private key ${file} is passphrase-protected and the passphrase is missing or wrong: set passphrase_env or passphrase_file`
        : `private key ${file} does not parse (${parsed.message}): use an OpenSSH or PEM private key (ssh-keygen -t ed25519)`,
    });
    return undefined;
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key.isPrivateKey()) {
    issues.push({ path: at, message: `${file} is a public key: point this at the private key (the file without .pub)` });
    return undefined;
  }
  return data;
}

function readEdgePublicKey(value: string, resolve: (p: string) => string, at: string, issues: ConfigIssue[]): string | undefined {
  let line = value.trim();
  if (!/^(ssh-|ecdsa-|sk-)/.test(line)) {
    try {
      line = readFileSync(resolve(value), 'utf8').trim().split('\n')[0];
    } catch (err) {
      issues.push({ path: at, message: `neither an OpenSSH public key line nor a readable file (${(err as NodeJS.ErrnoException).code}): paste the device's id_ed25519.pub line or give its path` });
      return undefined;
    }
  }
  const parsed = sshUtils.parseKey(line);
  if (parsed instanceof Error || (Array.isArray(parsed) ? parsed[0] : parsed).isPrivateKey()) {
    issues.push({ path: at, message: 'not an OpenSSH public key (expected a line like "ssh-ed25519 AAAA... device"): never put a private key here' });
    return undefined;
  }
  return line;
}

function checkPolicyPatterns(policy: PolicyConfig, at: string, issues: ConfigIssue[]): void {
  for (const list of ['allow', 'deny', 'confirm'] as const) {
    (policy[list] ?? []).forEach((pattern, i) => {
      if (typeof pattern !== 'string') return; // a structured rule: its schema checked it
      try {
        new RegExp(pattern);
      } catch (err) {
        issues.push({ path: `${at}.${list}[${i}]`, message: `not a valid regular expression: ${(err as Error).message}` });
      }
    });
  }
}

function checkAcrossConnections(
  entries: { index: number; connection: ResolvedConnection }[],
  prefix: (string | number)[],
  issues: ConfigIssue[],
): void {
  const byName = new Map<string, number>();
  const byTunnelPort = new Map<number, ResolvedConnection>();
  for (const { index, connection: c } of entries) {
    const first = byName.get(c.name);
    if (first !== undefined) {
      issues.push({ path: formatPath([...prefix, index, 'name']), message: `duplicate name "${c.name}" (also ${formatPath([...prefix, first, 'name'])}): names must be unique` });
    } else byName.set(c.name, index);
    if (c.mode !== 'tunnel') continue;
    const other = byTunnelPort.get(c.port);
    if (other !== undefined) {
      issues.push({ path: formatPath([...prefix, index, 'port']), message: `tunnel port ${c.port} is already used by "${other.name}": give each tunnel its own port` });
    } else byTunnelPort.set(c.port, c);
  }
}

function collectWarnings(connections: ResolvedConnection[], prefix: (string | number)[]): string[] {
  const warnings: string[] = [];
  connections.forEach((c, i) => {
    if (!c.effectivePolicy) {
      warnings.push(`${formatPath([...prefix, i])} ("${c.name}"): no policy — every command the agent sends will run. Add a "policy" or gateway.default_policy.`);
    }
    if (c.policy) {
      for (const w of policyWarnings(c.policy)) warnings.push(`${formatPath([...prefix, i, 'policy'])}.${w}`);
    }
    if (c.mode === 'tunnel' && !c.edgePublicKeyLine) {
      warnings.push(
        `${formatPath([...prefix, i])} ("${c.name}"): tunnel connection without edge_public_key — no device can log in for it; the other connections work. ` +
          `Add "edge_public_key": "ssh-ed25519 AAAA... (the device's public key)" to it (and gateway.tunnel_host_key; this needs the full { "gateway": ..., "connections": [...] } form), then run edge-setup ${c.name}.`,
      );
    }
  });
  return warnings;
}
