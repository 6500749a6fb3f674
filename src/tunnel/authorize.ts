// The tunnel server's trust decisions, and nothing else: who may log in (which user, which key) and which
// forward that login may hold. Pure functions over plain data, so every hostile input has a unit test.
import { timingSafeEqual } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { printable } from '../util/text.js';

const { utils } = ssh2;

/** The only authentication method the tunnel server offers, sent back with every failure. */
export const ALLOWED_AUTH_METHODS = ['publickey'] as const;

/** After this many refused authentication attempts one connection is ended (OpenSSH's MaxAuthTries). */
export const MAX_AUTH_TRIES = 6;

/** One device that may log in: the connection's name is its login name, and it holds exactly one key. */
export interface EdgeIdentity {
  name: string;
  port: number;
  key: ParsedKey;
  /** The public key in SSH wire format, compared against what the client offers. */
  blob: Buffer;
}

export type EdgeKeyring = ReadonlyMap<string, EdgeIdentity>;

/** Parses one OpenSSH public key line ("ssh-ed25519 AAAA... comment"). Throws with the cause. */
export function parseEdgePublicKey(line: string): ParsedKey {
  const parsed = utils.parseKey(line.trim());
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (key === undefined || key instanceof Error) {
    throw new Error(`not an OpenSSH public key line${key instanceof Error ? `: ${key.message}` : ''}`);
  }
  // A private key here would be a leaked secret in the config: refuse it rather than derive the public half.
  if (key.isPrivateKey()) throw new Error('this is a private key; give the public key line (the .pub file)');
  return key;
}

/** Builds the name → key map; endpoints without a key are absent (no device can log in for them). */
export function buildEdgeKeyring(endpoints: ReadonlyArray<{ name: string; port: number; edgePublicKey?: string }>): EdgeKeyring {
  const keyring = new Map<string, EdgeIdentity>();
  for (const { name, port, edgePublicKey } of endpoints) {
    if (edgePublicKey === undefined || edgePublicKey.trim() === '') continue;
    let key: ParsedKey;
    try {
      key = parseEdgePublicKey(edgePublicKey);
    } catch (err) {
      throw new Error(`edge public key of tunnel connection "${name}" is unusable: ${(err as Error).message}`);
    }
    keyring.set(name, { name, port, key, blob: key.getPublicSSH() });
  }
  return keyring;
}

export interface AuthAttempt {
  username: string;
  method: string;
  /** publickey only: the offered key's algorithm (ssh2 reports RSA as "ssh-rsa" whatever the hash). */
  keyAlgo?: string;
  keyBlob?: Buffer;
  /** publickey only: absent when the client merely asks whether the key would be accepted. */
  signature?: Buffer;
  signedData?: Buffer;
  hashAlgo?: string;
}

export type AuthVerdict =
  /** The key would be accepted: tell the client to go on and sign (no login yet). */
  | { kind: 'key-acceptable'; name: string }
  | { kind: 'accept'; name: string }
  /** `quiet`: a routine refusal (the `none` method list query) that is not worth an audit record. */
  | { kind: 'reject'; reason: string; quiet?: boolean };

export function decideAuthentication(attempt: AuthAttempt, keyring: EdgeKeyring): AuthVerdict {
  if (attempt.method === 'none') return { kind: 'reject', reason: 'method "none" asks for the method list', quiet: true };
  if (attempt.method !== 'publickey') {
    return { kind: 'reject', reason: `${describeMethod(attempt.method)} authentication is not accepted (public key only)` };
  }
  const edge = keyring.get(attempt.username);
  if (edge === undefined) return { kind: 'reject', reason: 'no tunnel connection with this name, or it has no edge public key' };
  const keyProblem = offeredKeyProblem(attempt, edge);
  if (keyProblem !== undefined) return { kind: 'reject', reason: keyProblem };
  if (attempt.signature === undefined) return { kind: 'key-acceptable', name: edge.name };
  if (attempt.signedData === undefined || !signatureIsValid(edge.key, attempt)) {
    return { kind: 'reject', reason: 'signature does not verify with the edge public key' };
  }
  return { kind: 'accept', name: edge.name };
}

function describeMethod(method: string): string {
  return ['password', 'keyboard-interactive', 'hostbased'].includes(method) ? method : 'unknown method';
}

function offeredKeyProblem(attempt: AuthAttempt, edge: EdgeIdentity): string | undefined {
  if (attempt.keyBlob === undefined || !sameBytes(attempt.keyBlob, edge.blob)) {
    return `offered key is not the edge public key of "${edge.name}"`;
  }
  if (attempt.keyAlgo !== edge.key.type) return `key algorithm ${attempt.keyAlgo ?? '(none)'} does not match the key`;
  // ssh2 leaves hashAlgo unset for "ssh-rsa", i.e. SHA-1 signatures, which OpenSSH has refused since 8.8.
  if (edge.key.type === 'ssh-rsa' && attempt.hashAlgo !== 'sha256' && attempt.hashAlgo !== 'sha512') {
    return 'RSA signatures with SHA-1 (ssh-rsa) are not accepted; use rsa-sha2-256/512 or an ed25519 key';
  }
  return undefined;
}

function signatureIsValid(key: ParsedKey, attempt: AuthAttempt): boolean {
  try {
    // verify() returns an Error object (not false) for malformed input: only `true` counts.
    return key.verify(attempt.signedData!, attempt.signature!, attempt.hashAlgo) === true;
  } catch {
    return false;
  }
}

/** Constant-time for equal lengths; a length difference is not secret (public keys are public). */
export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---- forwards --------------------------------------------------------------------------------------------

/**
 * Bind addresses an OpenSSH client sends for a forward that is only meant for the server's own use:
 * `-R 22222:localhost:22` sends "localhost", `-R :22222:...` / `*:` send "". Anything naming another
 * interface (0.0.0.0, a LAN address) asks for an exposure the gateway never gives, so it is refused.
 */
export const ACCEPTED_BIND_ADDRESSES: ReadonlySet<string> = new Set(['', 'localhost', '127.0.0.1', '::1']);

export interface ForwardRequest {
  request: string;
  bindAddr: string;
  bindPort: number;
}

export interface ActiveForward {
  bindAddr: string;
  port: number;
}

export type ForwardVerdict = { allowed: true } | { allowed: false; reason: string };

/** May this logged-in edge hold (or cancel) this forward, given the forward it already holds? */
export function decideForward(req: ForwardRequest, edge: { name: string; port: number }, active: ActiveForward | undefined): ForwardVerdict {
  if (req.request === 'tcpip-forward') return decideNewForward(req, edge, active);
  if (req.request === 'cancel-tcpip-forward') return decideCancel(req, edge, active);
  return refuse(`${req.request} is not allowed: only tcpip-forward for port ${edge.port}`);
}

function decideNewForward(req: ForwardRequest, edge: { name: string; port: number }, active: ActiveForward | undefined): ForwardVerdict {
  if (req.bindPort === 0) return refuse(`port 0 (a server-chosen port) is not allowed: forward port ${edge.port}`);
  if (req.bindPort !== edge.port) return refuse(`port ${req.bindPort} is not the port of "${edge.name}": forward port ${edge.port}`);
  if (!ACCEPTED_BIND_ADDRESSES.has(req.bindAddr)) {
    return refuse(`bind address "${printable(req.bindAddr)}" is not allowed: use -R ${edge.port}:localhost:22`);
  }
  if (active !== undefined) return refuse(`a forward for port ${active.port} is already active on this connection`);
  return { allowed: true };
}

function decideCancel(req: ForwardRequest, edge: { name: string; port: number }, active: ActiveForward | undefined): ForwardVerdict {
  if (active === undefined) return refuse('no forward is active on this connection');
  if (req.bindPort !== active.port || req.bindAddr !== active.bindAddr) {
    return refuse(`cancel for "${printable(req.bindAddr)}":${req.bindPort} does not match the active forward of "${edge.name}"`);
  }
  return { allowed: true };
}

function refuse(reason: string): ForwardVerdict {
  return { allowed: false, reason };
}

// ---- channels --------------------------------------------------------------------------------------------

/** Why each channel type an edge might open is refused (the server accepts none). */
export const CHANNEL_REFUSALS = {
  session: 'session channels are not allowed (no shell, exec, subsystem, pty, env, agent or X11)',
  'direct-tcpip': 'direct-tcpip (ssh -L / -D) is not allowed: the gateway is not a proxy into its network',
  'direct-streamlocal@openssh.com': 'direct-streamlocal (ssh -L to a socket) is not allowed',
} as const;

/** Client-supplied text for logs: control characters made visible, length capped. */
export { printable };
