// The host-key trust decision: is the key a device presented the one we expect? Pins first, then known_hosts
// files read the way OpenSSH reads them ([host]:port entries, hashed names, wildcards, negation, @revoked).
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function fingerprintOfBlob(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The key type name at the start of an SSH public key blob ("ssh-ed25519", ...). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  return length > 0 && length < 64 && blob.length >= 4 + length ? blob.subarray(4, 4 + length).toString('latin1') : 'unknown';
}

/** The name OpenSSH looks up in known_hosts: "host" on port 22, else "[host]:port". */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function knownHostsLineFor(host: string, port: number, blob: Buffer): string {
  return `${knownHostsName(host, port)} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}`;
}

export interface HostKeyPolicy {
  /** Connection name, for messages. */
  connection: string;
  /** Pinned SHA256 fingerprints; when present, they alone decide. */
  pins?: string[];
  /** known_hosts files consulted in order when there are no pins. */
  knownHostsFiles: string[];
}

export type HostKeyVerdict =
  | { ok: true; fingerprint: string; matchedBy: string }
  | { ok: false; kind: 'unknown' | 'mismatch' | 'revoked'; fingerprint: string; message: string };

interface KnownHostsEntry {
  marker?: string;
  patterns: string;
  keyType: string;
  blob: Buffer;
}

function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    const marker = fields[0].startsWith('@') ? fields.shift() : undefined;
    if (fields.length < 3) continue;
    const blob = Buffer.from(fields[2], 'base64');
    if (blob.length === 0) continue;
    entries.push({ marker, patterns: fields[0], keyType: fields[1], blob });
  }
  return entries;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

function hashedNameMatches(pattern: string, name: string): boolean {
  const [, , salt64, hash64] = pattern.split('|');
  if (!salt64 || !hash64) return false;
  const expected = Buffer.from(hash64, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt64, 'base64')).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** OpenSSH semantics: any negated pattern that matches excludes the line; otherwise any positive match selects it. */
export function hostPatternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) return hashedNameMatches(patterns, name);
  let matched = false;
  for (const pattern of patterns.split(',')) {
    const negated = pattern.startsWith('!');
    const body = negated ? pattern.slice(1) : pattern;
    if (!globToRegExp(body).test(name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function readKnownHosts(file: string): KnownHostsEntry[] {
  try {
    return parseKnownHosts(readFileSync(file, 'utf8'));
  } catch {
    return []; // A missing default file is normal; configured files are checked at config load.
  }
}

export function defaultKnownHostsFiles(): string[] {
  return [path.join(os.homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];
}

function howToTrust(policy: HostKeyPolicy, host: string, port: number, blob: Buffer, fingerprint: string): string {
  return (
    `If this is the device's real key (compare on the device: ssh-keygen -lf /etc/ssh/ssh_host_${keyTypeOfBlob(blob).replace(/^ssh-/, '')}_key.pub), ` +
    `pin it with "host_key": "${fingerprint}" in connection "${policy.connection}", or add this line to known_hosts: ${knownHostsLineFor(host, port, blob)}`
  );
}

export function verifyHostKey(host: string, port: number, blob: Buffer, policy: HostKeyPolicy): HostKeyVerdict {
  const fingerprint = fingerprintOfBlob(blob);
  const presented = `${keyTypeOfBlob(blob)} key ${fingerprint}`;
  if (policy.pins && policy.pins.length > 0) {
    if (policy.pins.includes(fingerprint)) return { ok: true, fingerprint, matchedBy: 'host_key pin' };
    return {
      ok: false,
      kind: 'mismatch',
      fingerprint,
      message:
        `host key mismatch for "${policy.connection}" (${host}:${port}): the device presented ${presented}, but host_key pins ${policy.pins.join(', ')}. ` +
        `The device was reinstalled or someone is intercepting the connection. Refusing to connect. ` +
        howToTrust(policy, host, port, blob, fingerprint),
    };
  }
  const name = knownHostsName(host, port);
  const files = policy.knownHostsFiles.map((file) => ({ file, entries: readKnownHosts(file).filter((e) => hostPatternsMatch(e.patterns, name)) }));
  // Revocation first, in every file: a @revoked line wins wherever it is, as in OpenSSH.
  for (const { file, entries } of files) {
    if (entries.some((e) => e.marker === '@revoked' && e.blob.equals(blob))) {
      return { ok: false, kind: 'revoked', fingerprint, message: `host key ${fingerprint} for "${policy.connection}" is marked @revoked in ${file}: refusing to connect.` };
    }
  }
  let sawHost = false;
  for (const { file, entries } of files) {
    for (const entry of entries) {
      if (entry.marker) continue; // @cert-authority: certificates are not supported, so it neither trusts nor conflicts.
      if (entry.blob.equals(blob)) return { ok: true, fingerprint, matchedBy: file };
      sawHost = true;
    }
  }
  const searched = policy.knownHostsFiles.join(', ');
  if (sawHost) {
    return {
      ok: false,
      kind: 'mismatch',
      fingerprint,
      message:
        `host key for "${policy.connection}" (${name}) has CHANGED: the device presented ${presented}, which differs from the key in ${searched}. ` +
        `The device was reinstalled or someone is intercepting the connection. Refusing to connect. ` +
        howToTrust(policy, host, port, blob, fingerprint),
    };
  }
  return {
    ok: false,
    kind: 'unknown',
    fingerprint,
    message: `host key for "${policy.connection}" (${name}) is not known (searched ${searched}); the device presented ${presented}. Refusing to connect. ` + howToTrust(policy, host, port, blob, fingerprint),
  };
}
