// Config loading through loadConfig: both forms, relative paths, every problem reported at once with its JSON
// path, and passphrase-protected keys. Keys are made with ssh-keygen at run time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, copyFile, chmod, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, ConfigError, type ConfigIssue } from '../../src/config/load.js';
import { makeKeyPair, type KeyPair } from '../helpers/sshd.js';
import { writeBrokenConfig } from '../helpers/broken-config.js';

let dir: string;
let key: KeyPair; // plain ed25519, mode 0600
let edgeKey: KeyPair; // a device's tunnel login key
let encrypted: KeyPair; // passphrase "correct horse"
let hostKey: KeyPair; // tunnel server host key
const PASSPHRASE = 'correct horse';

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-config-'));
  key = await makeKeyPair(dir, 'id_ed25519');
  edgeKey = await makeKeyPair(dir, 'edge_ed25519');
  encrypted = await makeKeyPair(dir, 'id_encrypted', PASSPHRASE);
  hostKey = await makeKeyPair(dir, 'tunnel_host_ed25519_key');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function writeJson(value: unknown, folder = dir): Promise<string> {
  const file = path.join(folder, `config-${++counter}.json`);
  await writeFile(file, JSON.stringify(value, null, 2));
  return file;
}

function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.issues;
  }
  assert.fail('expected the config to be rejected');
}

function issueAt(issues: ConfigIssue[], at: string, message?: RegExp): ConfigIssue {
  const found = issues.filter((i) => i.path === at && (!message || message.test(i.message)));
  assert.ok(found.length > 0, `no issue at ${at}${message ? ` matching ${message}` : ''}; got:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
  return found[0];
}

test('the original array form (name, mode, user, host, port, id_file) loads', async () => {
  const file = await writeJson([
    { name: 'edge-vm-1', mode: 'direct', user: 'root', host: '127.0.0.1', port: 2201, id_file: key.privatePath },
    { name: 'edge-vm-2', mode: 'direct', user: 'pi', host: '127.0.0.1', port: 2202, id_file: key.privatePath },
  ]);
  const config = loadConfig(file, {});
  assert.equal(config.form, 'array');
  assert.deepEqual(
    config.connections.map((c) => [c.name, c.mode, c.user, c.host, c.port]),
    [
      ['edge-vm-1', 'direct', 'root', '127.0.0.1', 2201],
      ['edge-vm-2', 'direct', 'pi', '127.0.0.1', 2202],
    ],
  );
  assert.ok(config.connections[0].privateKey.length > 0, 'the private key was read');
  // No policy anywhere: every command runs, and the loader warns about it.
  assert.equal(config.connections[0].effectivePolicy, undefined);
  assert.ok(config.warnings.some((w) => /no policy/.test(w) && w.includes('edge-vm-1')), config.warnings.join('\n'));
});

test('the full { gateway, connections } form loads with every optional field', async () => {
  const file = await writeJson({
    gateway: {
      tunnel_listen: '127.0.0.1:2299',
      tunnel_host_key: hostKey.privatePath,
      audit_log: path.join(dir, 'audit-full.log'),
      max_output_bytes: 4096,
      default_policy: { deny: ['^rm -rf /'] },
      timeouts: { connect_s: 5, command_s: 30, idle_s: 60, keepalive_s: 10 },
      retry: { attempts: 3, backoff_ms: 100, failure_threshold: 4, cooldown_s: 10 },
    },
    connections: [
      {
        name: 'router',
        mode: 'direct',
        user: 'admin',
        host: 'router.lan',
        port: 22,
        id_file: key.privatePath,
        host_key: 'SHA256:' + 'A'.repeat(43),
        tags: ['lab', 'net'],
        policy: { allow: ['^uptime$', '^df -h$'], read_only: true },
        actions: {
          restart: {
            description: 'Restart a service',
            command: 'systemctl restart {{unit}}',
            params: { unit: { type: 'enum', values: ['nginx', 'ssh'] } },
          },
        },
        max_sessions: 4,
      },
      {
        name: 'edge-vm-2',
        mode: 'tunnel',
        user: 'root',
        host: '127.0.0.1',
        port: 22222,
        id_file: key.privatePath,
        edge_public_key: edgeKey.publicLine,
        bind_loopback: true,
      },
    ],
  });
  const config = loadConfig(file, {});
  assert.equal(config.form, 'full');
  assert.equal(config.gateway.tunnel_listen, '127.0.0.1:2299');
  assert.equal(config.gateway.max_output_bytes, 4096);
  assert.equal(config.connections.length, 2);
  const [router, edge] = config.connections;
  assert.deepEqual(router.tags, ['lab', 'net']);
  assert.deepEqual(router.effectivePolicy, { allow: ['^uptime$', '^df -h$'], read_only: true });
  assert.deepEqual(Object.keys(router.actions ?? {}), ['restart']);
  assert.equal(edge.edgePublicKeyLine, edgeKey.publicLine);
  // The gateway default policy applies where a connection has none, so there is no "no policy" warning.
  assert.deepEqual(edge.effectivePolicy, { deny: ['^rm -rf /'] });
  assert.ok(!config.warnings.some((w) => /no policy/.test(w)), config.warnings.join('\n'));
});

test('relative paths resolve against the config file folder, not the working directory', async () => {
  const folder = path.join(dir, 'nested', 'conf');
  await mkdir(path.join(folder, 'keys'), { recursive: true });
  await copyFile(key.privatePath, path.join(folder, 'keys', 'device_key'));
  await chmod(path.join(folder, 'keys', 'device_key'), 0o600);
  await writeFile(path.join(folder, 'hosts'), '');
  const file = await writeJson(
    {
      gateway: { audit_log: 'logs/audit.jsonl', known_hosts: './hosts' },
      connections: [{ name: 'd', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: 'keys/device_key', known_hosts: 'hosts' }],
    },
    folder,
  );
  const cwd = process.cwd();
  assert.notEqual(cwd, folder);
  const config = loadConfig(path.relative(cwd, file), {});
  assert.equal(config.dir, folder);
  assert.equal(config.connections[0].id_file, path.join(folder, 'keys', 'device_key'));
  assert.equal(config.connections[0].known_hosts, path.join(folder, 'hosts'));
  assert.equal(config.gateway.audit_log, path.join(folder, 'logs', 'audit.jsonl'));
  assert.equal(config.gateway.known_hosts, path.join(folder, 'hosts'));
  // The default audit log sits next to the config too.
  const other = await writeJson([{ name: 'd', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: 'keys/device_key' }], folder);
  assert.equal(loadConfig(other, {}).gateway.audit_log, path.join(folder, 'audit.log'));
});

test('a broken config reports every problem at once, each with its JSON path and a fix', async () => {
  const folder = await mkdtemp(path.join(dir, 'broken-'));
  const { file, expected } = await writeBrokenConfig(folder);
  const issues = issuesOf(() => loadConfig(file, {}));
  for (const [at, message] of expected) issueAt(issues, at, message);
  // Nothing is reported against the connections that are fine.
  assert.ok(!issues.some((i) => i.path.startsWith('connections[0].')), JSON.stringify(issues));
  assert.ok(!issues.some((i) => i.path.startsWith('connections[9].')), JSON.stringify(issues));
  // The error message itself (what `check` prints) names every path.
  try {
    loadConfig(file, {});
  } catch (err) {
    for (const [at] of expected) assert.ok((err as Error).message.includes(at), `message lacks ${at}`);
  }
});

test('the array form also reports problems in several connections at once', async () => {
  const file = await writeJson([
    { name: 'a', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: key.privatePath, extra: 1 },
    { name: 'b', mode: 'ssh', user: 'root', host: '127.0.0.1', port: 22, id_file: key.privatePath },
    { name: 'c', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: 'missing' },
    { name: 'c', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: key.privatePath },
  ]);
  const issues = issuesOf(() => loadConfig(file, {}));
  issueAt(issues, '[0].extra', /unknown field/);
  issueAt(issues, '[1].mode');
  issueAt(issues, '[2].id_file', /no such file/);
  issueAt(issues, '[3].name', /duplicate name "c"/);
});

test('invalid JSON is reported with its line and column', async () => {
  const file = path.join(dir, 'syntax.json');
  await writeFile(file, '[\n  { "name": "a", }\n]\n');
  const issues = issuesOf(() => loadConfig(file, {}));
  assert.match(issues[0].message, /line 2, column \d+/);
});

test('a passphrase-protected key loads with passphrase_env', async () => {
  const file = await writeJson([
    { name: 'locked', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: encrypted.privatePath, passphrase_env: 'DEVICE_KEY_PASSPHRASE' },
  ]);
  const config = loadConfig(file, { DEVICE_KEY_PASSPHRASE: PASSPHRASE });
  assert.equal(config.connections[0].passphrase, PASSPHRASE);
  assert.ok(config.connections[0].privateKey.length > 0);
});

test('a passphrase-protected key loads with passphrase_file (relative to the config folder)', async () => {
  await writeFile(path.join(dir, 'passphrase.txt'), PASSPHRASE + '\n', { mode: 0o600 });
  const file = await writeJson([
    { name: 'locked', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: encrypted.privatePath, passphrase_file: 'passphrase.txt' },
  ]);
  const config = loadConfig(file, {});
  assert.equal(config.connections[0].passphrase, PASSPHRASE);
});

test('a wrong passphrase is a clear config error, not a crash at connect time', async () => {
  const file = await writeJson([
    { name: 'locked', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: encrypted.privatePath, passphrase_env: 'DEVICE_KEY_PASSPHRASE' },
  ]);
  const wrong = issueAt(issuesOf(() => loadConfig(file, { DEVICE_KEY_PASSPHRASE: 'not-the-passphrase-42' })), '[0].id_file');
  assert.match(wrong.message, /passphrase-protected and the passphrase is missing or wrong/);
  // A protected key with no passphrase configured at all says how to give one.
  const none = await writeJson([{ name: 'locked', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: encrypted.privatePath }]);
  assert.match(issueAt(issuesOf(() => loadConfig(none, {})), '[0].id_file').message, /set passphrase_env or passphrase_file/);
  // The passphrase given never appears in the message.
  assert.ok(!wrong.message.includes('not-the-passphrase-42'));
});

test('a staging_dir others can write to is a config error with the chmod that fixes it', async () => {
  const staging = path.join(dir, 'shared-staging');
  await mkdir(staging);
  await chmod(staging, 0o777);
  const file = await writeJson({
    gateway: { staging_dir: staging },
    connections: [{ name: 'dev1', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: key.privatePath }],
  });
  issueAt(issuesOf(() => loadConfig(file, {})), 'gateway.staging_dir', new RegExp(`writable by group or others \\(mode 777\\).*chmod 700 ${staging}`));
  await chmod(staging, 0o700);
  assert.equal(loadConfig(file, {}).gateway.staging_dir, staging);
});

test('two HTTP tokens with one name are a config error: the name is the principal approvals are bound to', async () => {
  const file = await writeJson({
    gateway: { http: { listen: '127.0.0.1:8080', tokens: [{ name: 'agent', token_sha256: 'a'.repeat(64) }, { name: 'agent', token_sha256: 'b'.repeat(64) }] } },
    connections: [{ name: 'dev1', mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: key.privatePath }],
  });
  issueAt(issuesOf(() => loadConfig(file, {})), 'gateway.http.tokens[1].name', /token name "agent" is used twice/);
});
