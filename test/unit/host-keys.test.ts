// Host-key trust decisions (verifyHostKey): pins, and known_hosts read the way OpenSSH reads it. Keys and the
// hashed known_hosts file are made with ssh-keygen at run time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyHostKey, hostPatternsMatch, knownHostsLineFor, fingerprintOfBlob, type HostKeyVerdict } from '../../src/ssh/host-keys.js';
import { makeKeyPair, fingerprintOf, type KeyPair } from '../helpers/sshd.js';

const run = promisify(execFile);
let dir: string;
let deviceKey: KeyPair;
let otherKey: KeyPair;
let device: Buffer; // the SSH wire blob the device presents
let other: Buffer;

const blobOf = (k: KeyPair): Buffer => Buffer.from(k.publicLine.split(/\s+/)[1], 'base64');
const keyPart = (k: KeyPair): string => k.publicLine.split(/\s+/).slice(0, 2).join(' ');

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-hostkeys-'));
  deviceKey = await makeKeyPair(dir, 'device_host_key');
  otherKey = await makeKeyPair(dir, 'other_host_key');
  device = blobOf(deviceKey);
  other = blobOf(otherKey);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function knownHosts(...lines: string[]): Promise<string> {
  const file = path.join(dir, `known_hosts_${++counter}`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

function verify(host: string, port: number, blob: Buffer, files: string[], pins?: string[]): HostKeyVerdict {
  return verifyHostKey(host, port, blob, { connection: 'dev1', pins, knownHostsFiles: files });
}

test('the fingerprint matches what ssh-keygen -lf prints', async () => {
  const { stdout } = await run('ssh-keygen', ['-lf', deviceKey.publicPath]);
  assert.equal(fingerprintOfBlob(device), stdout.split(/\s+/)[1]);
  assert.equal(fingerprintOfBlob(device), fingerprintOf(deviceKey.publicLine));
});

test('a host_key pin that matches is trusted, and pins alone decide', async () => {
  const fp = fingerprintOf(deviceKey.publicLine);
  const v = verify('10.0.0.1', 22, device, [], [fp]);
  assert.equal(v.ok, true);
  // Several pins (key rotation): any of them.
  assert.equal(verify('10.0.0.1', 22, device, [], [fingerprintOf(otherKey.publicLine), fp]).ok, true);
  // A known_hosts that trusts another key for the host does not override a matching pin.
  const file = await knownHosts(`10.0.0.1 ${keyPart(otherKey)}`);
  assert.equal(verify('10.0.0.1', 22, device, [file], [fp]).ok, true);
});

test('a host_key pin that does not match refuses, showing the presented fingerprint and how to pin it', () => {
  const pinned = fingerprintOf(otherKey.publicLine);
  const presented = fingerprintOf(deviceKey.publicLine);
  const v = verify('10.0.0.1', 2222, device, [], [pinned]);
  assert.equal(v.ok, false);
  assert.ok(!v.ok && v.kind === 'mismatch');
  assert.equal(v.fingerprint, presented);
  if (v.ok) return;
  assert.ok(v.message.includes(presented), v.message);
  assert.ok(v.message.includes(pinned), 'names the pin that was expected');
  assert.ok(v.message.includes(`"host_key": "${presented}"`), v.message);
  assert.ok(v.message.includes(`[10.0.0.1]:2222 ${keyPart(deviceKey)}`), v.message);
});

test('a plain known_hosts entry (port 22) is trusted', async () => {
  const file = await knownHosts('# comment', '', `device.lan,10.0.0.7 ${keyPart(deviceKey)}`);
  const v = verify('10.0.0.7', 22, device, [file]);
  assert.ok(v.ok, JSON.stringify(v));
  assert.equal(v.ok && v.matchedBy, file);
  assert.ok(verify('device.lan', 22, device, [file]).ok);
  assert.ok(verify('DEVICE.LAN', 22, device, [file]).ok, 'host names compare case-insensitively');
});

test('a non-standard port is looked up as [host]:port, as OpenSSH writes it', async () => {
  const file = await knownHosts(`[127.0.0.1]:2222 ${keyPart(deviceKey)}`);
  assert.ok(verify('127.0.0.1', 2222, device, [file]).ok);
  // The same host on another port is a different entry: unknown there.
  const v = verify('127.0.0.1', 2223, device, [file]);
  assert.ok(!v.ok && v.kind === 'unknown', JSON.stringify(v));
  // A bare host entry does not cover a non-standard port (OpenSSH behaves the same).
  const bare = await knownHosts(`127.0.0.1 ${keyPart(deviceKey)}`);
  assert.ok(!verify('127.0.0.1', 2222, device, [bare]).ok);
});

test('hashed entries (ssh-keygen -H) are matched, for port 22 and [host]:port', async () => {
  const file = await knownHosts(`10.9.8.7 ${keyPart(deviceKey)}`, `[127.0.0.1]:2222 ${keyPart(deviceKey)}`);
  await run('ssh-keygen', ['-H', '-f', file]);
  const hashed = await readFile(file, 'utf8');
  assert.ok(!hashed.includes('10.9.8.7') && !hashed.includes('127.0.0.1'), 'ssh-keygen hashed the names');
  assert.match(hashed, /^\|1\|[^|]+\|[^ ]+ ssh-ed25519 /m);
  assert.ok(verify('10.9.8.7', 22, device, [file]).ok);
  assert.ok(verify('127.0.0.1', 2222, device, [file]).ok);
  assert.ok(!verify('10.9.8.6', 22, device, [file]).ok);
  // A hashed entry for the host with another key is a CHANGED key, not an unknown one.
  const v = verify('10.9.8.7', 22, other, [file]);
  assert.ok(!v.ok && v.kind === 'mismatch', JSON.stringify(v));
});

test('wildcards and negated patterns follow OpenSSH semantics', async () => {
  assert.equal(hostPatternsMatch('*.example.com', 'a.example.com'), true);
  assert.equal(hostPatternsMatch('*.example.com', 'example.com'), false);
  assert.equal(hostPatternsMatch('10.0.0.?', '10.0.0.5'), true);
  assert.equal(hostPatternsMatch('10.0.0.?', '10.0.0.55'), false);
  assert.equal(hostPatternsMatch('*.example.com,!bad.example.com', 'bad.example.com'), false);
  assert.equal(hostPatternsMatch('!bad.example.com,*.example.com', 'bad.example.com'), false, 'negation wins wherever it is');
  assert.equal(hostPatternsMatch('!bad.example.com', 'good.example.com'), false, 'a lone negation selects nothing');
  assert.equal(hostPatternsMatch('[127.0.0.*]:2222', '[127.0.0.1]:2222'), true);
  assert.equal(hostPatternsMatch('a+b.example.com', 'aab.example.com'), false, 'regex metacharacters are literal');

  const file = await knownHosts(`*.fleet.lan,!rogue.fleet.lan ${keyPart(deviceKey)}`);
  assert.ok(verify('cam-1.fleet.lan', 22, device, [file]).ok);
  const v = verify('rogue.fleet.lan', 22, device, [file]);
  assert.ok(!v.ok && v.kind === 'unknown', JSON.stringify(v));
});

test('@revoked refuses the key even when another line trusts it', async () => {
  for (const order of ['trust-first', 'revoked-first']) {
    const trust = `10.0.0.9 ${keyPart(deviceKey)}`;
    const revoked = `@revoked * ${keyPart(deviceKey)}`;
    const file = await knownHosts(...(order === 'trust-first' ? [trust, revoked] : [revoked, trust]));
    const v = verify('10.0.0.9', 22, device, [file]);
    assert.ok(!v.ok && v.kind === 'revoked', `${order}: ${JSON.stringify(v)}`);
    assert.ok(!v.ok && v.message.includes(fingerprintOf(deviceKey.publicLine)));
  }
  // Revocation in a later file still counts.
  const trusting = await knownHosts(`10.0.0.9 ${keyPart(deviceKey)}`);
  const revoking = await knownHosts(`@revoked 10.0.0.9 ${keyPart(deviceKey)}`);
  const v = verify('10.0.0.9', 22, device, [trusting, revoking]);
  assert.ok(!v.ok && v.kind === 'revoked', JSON.stringify(v));
  // A revoked *other* key does not affect this one.
  const unrelated = await knownHosts(`@revoked * ${keyPart(otherKey)}`, `10.0.0.9 ${keyPart(deviceKey)}`);
  assert.ok(verify('10.0.0.9', 22, device, [unrelated]).ok);
});

test('a changed key (host known with another key) refuses with the presented fingerprint and the line to use', async () => {
  const file = await knownHosts(`[127.0.0.1]:2222 ${keyPart(otherKey)}`);
  const v = verify('127.0.0.1', 2222, device, [file]);
  assert.ok(!v.ok && v.kind === 'mismatch', JSON.stringify(v));
  if (v.ok) return;
  assert.match(v.message, /CHANGED/);
  assert.ok(v.message.includes(fingerprintOf(deviceKey.publicLine)));
});

test('an unknown key refuses with the presented SHA256 fingerprint and the exact known_hosts line / host_key pin to add', async () => {
  const empty = await knownHosts();
  const missing = path.join(dir, 'does-not-exist');
  const v = verify('127.0.0.1', 2222, device, [empty, missing]);
  assert.ok(!v.ok && v.kind === 'unknown', JSON.stringify(v));
  if (v.ok) return;
  const fp = fingerprintOf(deviceKey.publicLine);
  assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.equal(v.fingerprint, fp);
  assert.ok(v.message.includes(fp), v.message);
  assert.ok(v.message.includes(`"host_key": "${fp}"`), v.message);
  const line = `[127.0.0.1]:2222 ${keyPart(deviceKey)}`;
  assert.equal(knownHostsLineFor('127.0.0.1', 2222, device), line);
  assert.ok(v.message.includes(line), v.message);
  assert.ok(v.message.includes(empty), 'says which files were searched');
  // The line it suggests, added to known_hosts, is then trusted.
  const fixed = await knownHosts(line);
  assert.ok(verify('127.0.0.1', 2222, device, [fixed]).ok);
  // Port 22 suggests the bare host name.
  const v22 = verify('10.1.1.1', 22, device, [empty]);
  assert.ok(!v22.ok && v22.message.includes(`10.1.1.1 ${keyPart(deviceKey)}`));
});
