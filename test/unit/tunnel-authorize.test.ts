// Hostile inputs against the tunnel server's trust decisions: who may log in, and which forward it may hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import {
  buildEdgeKeyring,
  decideAuthentication,
  decideForward,
  parseEdgePublicKey,
  printable,
  sameBytes,
  type AuthAttempt,
} from '../../src/tunnel/authorize.js';
import { knownHostsLine, renderEdgeSetup, tunnelCommand } from '../../src/tunnel/edge-setup.js';

const { utils } = ssh2;

function keyPair(type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519') {
  const pair = type === 'rsa' ? utils.generateKeyPairSync('rsa', { bits: 2048 }) : type === 'ecdsa' ? utils.generateKeyPairSync('ecdsa', { bits: 256 }) : utils.generateKeyPairSync('ed25519');
  const priv = utils.parseKey(pair.private) as ParsedKey;
  return { publicLine: pair.public, privateLine: pair.private, priv, blob: priv.getPublicSSH() };
}

const edge = keyPair();
const other = keyPair();
const keyring = buildEdgeKeyring([
  { name: 'edge-1', port: 22222, edgePublicKey: edge.publicLine },
  { name: 'keyless', port: 22223 },
]);

/** What a client signs for publickey auth (any bytes will do for these decisions). */
const signedData = createHash('sha256').update('session id + request').digest();

function signedAttempt(key: ReturnType<typeof keyPair>, over: Partial<AuthAttempt> = {}, hashAlgo?: string): AuthAttempt {
  return {
    username: 'edge-1',
    method: 'publickey',
    keyAlgo: key.priv.type,
    keyBlob: key.blob,
    signedData,
    signature: key.priv.sign(signedData, hashAlgo),
    hashAlgo,
    ...over,
  };
}

test('the edge logs in with its own key and a valid signature', () => {
  assert.deepEqual(decideAuthentication(signedAttempt(edge), keyring), { kind: 'accept', name: 'edge-1' });
});

test('a key query (no signature yet) for the right key is answered "acceptable", not a login', () => {
  const { signature: _s, signedData: _d, ...query } = signedAttempt(edge);
  assert.deepEqual(decideAuthentication(query, keyring), { kind: 'key-acceptable', name: 'edge-1' });
});

test('a signature made with another key over the right public key is refused', () => {
  const forged = signedAttempt(edge, { signature: other.priv.sign(signedData) });
  assert.equal(decideAuthentication(forged, keyring).kind, 'reject');
});

test('a signature over different data is refused (no replay from another session)', () => {
  const replayed = signedAttempt(edge, { signedData: Buffer.from('another session') });
  assert.equal(decideAuthentication(replayed, keyring).kind, 'reject');
});

test('garbage, empty and truncated signatures are refused without throwing', () => {
  for (const signature of [Buffer.alloc(0), randomBytes(64), randomBytes(3), Buffer.alloc(64), edge.priv.sign(signedData).subarray(0, 63)]) {
    assert.equal(decideAuthentication(signedAttempt(edge, { signature }), keyring).kind, 'reject');
  }
});

test('a signature without the signed data is refused', () => {
  assert.equal(decideAuthentication(signedAttempt(edge, { signedData: undefined }), keyring).kind, 'reject');
});

test('another key, even correctly signed, is refused for the edge name', () => {
  const verdict = decideAuthentication(signedAttempt(other), keyring);
  assert.equal(verdict.kind, 'reject');
  assert.match((verdict as { reason: string }).reason, /not the edge public key of "edge-1"/);
});

test('a key blob that differs in one byte, is a prefix, or has a trailing byte is refused', () => {
  const flipped = Buffer.from(edge.blob);
  flipped[flipped.length - 1] ^= 1;
  for (const keyBlob of [flipped, edge.blob.subarray(0, edge.blob.length - 1), Buffer.concat([edge.blob, Buffer.from([0])]), Buffer.alloc(0)]) {
    assert.equal(decideAuthentication(signedAttempt(edge, { keyBlob }), keyring).kind, 'reject');
  }
});

test('the right key with a mismatching algorithm name is refused', () => {
  assert.equal(decideAuthentication(signedAttempt(edge, { keyAlgo: 'ssh-rsa' }), keyring).kind, 'reject');
  assert.equal(decideAuthentication(signedAttempt(edge, { keyAlgo: undefined }), keyring).kind, 'reject');
});

test('the right key under any other login name is refused', () => {
  for (const username of ['edge-2', 'EDGE-1', 'edge-1 ', ' edge-1', 'edge-1\u0000', 'edge-1\n', '', 'root', 'keyless', '__proto__', 'constructor', 'edge-\u0131']) {
    const verdict = decideAuthentication(signedAttempt(edge, { username }), keyring);
    assert.equal(verdict.kind, 'reject', `login name ${JSON.stringify(username)}`);
  }
});

test('a connection without an edge public key has no way in', () => {
  assert.equal(keyring.has('keyless'), false);
  assert.equal(decideAuthentication({ username: 'keyless', method: 'password' }, keyring).kind, 'reject');
  assert.equal(decideAuthentication(signedAttempt(edge, { username: 'keyless' }), keyring).kind, 'reject');
});

test('password, keyboard-interactive, hostbased and unknown methods are refused with a reason', () => {
  for (const method of ['password', 'keyboard-interactive', 'hostbased', 'gssapi-with-mic', 'PUBLICKEY', '']) {
    const verdict = decideAuthentication({ username: 'edge-1', method }, keyring);
    assert.equal(verdict.kind, 'reject', method);
    assert.ok(!('quiet' in verdict && verdict.quiet), `${method} refusal must be logged`);
  }
});

test('"none" is refused quietly (every client asks it first to learn the methods)', () => {
  assert.deepEqual(decideAuthentication({ username: 'edge-1', method: 'none' }, keyring), {
    kind: 'reject',
    reason: 'method "none" asks for the method list',
    quiet: true,
  });
});

test('ECDSA edge keys work; RSA only with SHA-2 signatures, never SHA-1', () => {
  const ecdsa = keyPair('ecdsa');
  const rsa = keyPair('rsa');
  const ring = buildEdgeKeyring([
    { name: 'e', port: 1, edgePublicKey: ecdsa.publicLine },
    { name: 'r', port: 2, edgePublicKey: rsa.publicLine },
  ]);
  assert.equal(decideAuthentication(signedAttempt(ecdsa, { username: 'e' }), ring).kind, 'accept');
  assert.equal(decideAuthentication(signedAttempt(rsa, { username: 'r' }, 'sha256'), ring).kind, 'accept');
  assert.equal(decideAuthentication(signedAttempt(rsa, { username: 'r' }, 'sha512'), ring).kind, 'accept');
  const sha1 = decideAuthentication(signedAttempt(rsa, { username: 'r' }, 'sha1'), ring);
  assert.equal(sha1.kind, 'reject');
  assert.equal(decideAuthentication(signedAttempt(rsa, { username: 'r', hashAlgo: undefined }), ring).kind, 'reject');
  // A SHA-256 signature presented as SHA-512 does not verify.
  assert.equal(decideAuthentication(signedAttempt(rsa, { username: 'r', hashAlgo: 'sha512', signature: rsa.priv.sign(signedData, 'sha256') }), ring).kind, 'reject');
});

test('edge public keys: a private key, garbage, or a truncated line is a config error naming the connection', () => {
  assert.throws(() => parseEdgePublicKey(edge.privateLine), /private key/);
  for (const bad of ['ssh-ed25519', 'ssh-ed25519 AAAA', 'hello world', edge.publicLine.slice(0, 40)]) {
    assert.throws(() => buildEdgeKeyring([{ name: 'x', port: 1, edgePublicKey: bad }]), /edge public key of tunnel connection "x"/);
  }
  assert.equal(parseEdgePublicKey(`  ${edge.publicLine} comment with spaces \n`).type, 'ssh-ed25519');
});

// ---- forwards ----

const me = { name: 'edge-1', port: 22222 };

test('its own port on the usual loopback bind addresses is allowed', () => {
  for (const bindAddr of ['localhost', '', '127.0.0.1', '::1']) {
    assert.deepEqual(decideForward({ request: 'tcpip-forward', bindAddr, bindPort: 22222 }, me, undefined), { allowed: true }, bindAddr);
  }
});

test('another port, port 0 and out-of-range ports are refused with a reason naming the allowed port', () => {
  for (const bindPort of [0, 22, 22221, 22223, 2222, 65536, 22222 + 65536, -1, 4294967295]) {
    const verdict = decideForward({ request: 'tcpip-forward', bindAddr: 'localhost', bindPort }, me, undefined);
    assert.equal(verdict.allowed, false, String(bindPort));
    assert.match((verdict as { reason: string }).reason, /22222/);
  }
});

test('bind addresses that mean other interfaces or look alike are refused', () => {
  for (const bindAddr of ['0.0.0.0', '*', '::', '10.0.0.1', '127.0.0.2', 'LOCALHOST', 'localhost.', ' localhost', 'localhost\u0000', '::ffff:127.0.0.1', 'gateway']) {
    assert.equal(decideForward({ request: 'tcpip-forward', bindAddr, bindPort: 22222 }, me, undefined).allowed, false, JSON.stringify(bindAddr));
  }
});

test('a second forward on the same connection is refused, even for the same port', () => {
  const active = { bindAddr: 'localhost', port: 22222 };
  assert.equal(decideForward({ request: 'tcpip-forward', bindAddr: 'localhost', bindPort: 22222 }, me, active).allowed, false);
  assert.equal(decideForward({ request: 'tcpip-forward', bindAddr: '', bindPort: 22222 }, me, active).allowed, false);
});

test('cancel is allowed only for the active forward', () => {
  const active = { bindAddr: 'localhost', port: 22222 };
  assert.equal(decideForward({ request: 'cancel-tcpip-forward', bindAddr: 'localhost', bindPort: 22222 }, me, active).allowed, true);
  assert.equal(decideForward({ request: 'cancel-tcpip-forward', bindAddr: 'localhost', bindPort: 22222 }, me, undefined).allowed, false);
  assert.equal(decideForward({ request: 'cancel-tcpip-forward', bindAddr: 'localhost', bindPort: 80 }, me, active).allowed, false);
  assert.equal(decideForward({ request: 'cancel-tcpip-forward', bindAddr: '0.0.0.0', bindPort: 22222 }, me, active).allowed, false);
});

test('streamlocal forwards and unknown requests are refused', () => {
  for (const request of ['streamlocal-forward@openssh.com', 'cancel-streamlocal-forward@openssh.com', 'TCPIP-FORWARD', 'x']) {
    assert.equal(decideForward({ request, bindAddr: '/tmp/sock', bindPort: 0 }, me, undefined).allowed, false, request);
  }
});

test('client-supplied text is made printable and capped before it reaches a log', () => {
  assert.equal(printable('a\u0000b\nc\u001b[31m'), 'a\\x00b\\x0ac\\x1b[31m');
  assert.equal(printable('x'.repeat(100)).length, 65);
});

test('sameBytes compares content and length', () => {
  assert.equal(sameBytes(Buffer.from('abc'), Buffer.from('abc')), true);
  assert.equal(sameBytes(Buffer.from('abc'), Buffer.from('abd')), false);
  assert.equal(sameBytes(Buffer.from('abc'), Buffer.from('ab')), false);
});

// ---- edge-setup: what a device is told to run ----

const setup = { name: 'edge-1', port: 22222, gatewayHost: 'gw.example.net', tunnelPort: 2222, hostKeyLine: edge.publicLine };

test('edge-setup prints the exact tunnel command with the pinned host key', () => {
  assert.equal(
    tunnelCommand(setup).join(' '),
    'ssh -N -R 22222:localhost:22 -p 2222 -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/mcp-ssh-gateway/known_hosts -i /etc/mcp-ssh-gateway/edge-1_ed25519 edge-1@gw.example.net',
  );
  const [type, blob] = edge.publicLine.split(' ');
  assert.equal(knownHostsLine('gw.example.net', 2222, edge.publicLine), `[gw.example.net]:2222 ${type} ${blob}`);
  assert.equal(knownHostsLine('gw.example.net', 22, edge.publicLine), `gw.example.net ${type} ${blob}`);
  const printed = renderEdgeSetup(setup);
  assert.ok(printed.includes('Restart=always\nRestartSec=5'));
  assert.ok(printed.includes(`[gw.example.net]:2222 ${type} ${blob}\n`));
});

test('edge-setup refuses anything that would need quoting in a shell or a systemd unit', () => {
  for (const bad of [
    { name: 'edge;reboot' },
    { name: 'edge 1' },
    { gatewayHost: 'gw$(id)' },
    { gatewayHost: "gw'" },
    { identityFile: '/etc/my key' },
    { identityFile: '/etc/key\nExecStartPre=/bin/sh' },
    { knownHostsFile: '/etc/%h' },
    { port: 0 },
    { tunnelPort: 70000 },
    { hostKeyLine: 'ssh-ed25519 AAAA\nExecStart=/bin/sh' },
    { hostKeyLine: '' },
  ]) {
    assert.throws(() => renderEdgeSetup({ ...setup, ...bad }), /edge-setup:/, JSON.stringify(bad));
  }
});
