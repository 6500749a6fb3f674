// Streamable HTTP: the real MCP client over HTTP, bearer tokens required, the principal audited.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Sshd, freePort } from '../helpers/sshd.js';
import { writeConfig, directConnection, CLI } from '../helpers/gateway.js';

const TOKEN = 'test-token-0123456789abcdef-very-long';
let sshd: Sshd;
let gateway: ChildProcess;
let url: string;
let auditPath: string;
let configDir: string;

before(async () => {
  sshd = await Sshd.start();
  const port = await freePort();
  const { dir, configPath } = await writeConfig({
    gateway: { http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'ci-agent', token_env: 'MCPGW_TEST_TOKEN' }] } },
    connections: [directConnection(sshd), directConnection(sshd, 'guarded', { policy: { allow: ['^echo \\w+$'], confirm: ['^echo approved\\w*$'] } })],
  });
  auditPath = `${dir}/audit.log`;
  configDir = dir;
  gateway = spawn(process.execPath, [CLI, 'serve', '--config', configPath], {
    env: { ...process.env, MCPGW_TEST_TOKEN: TOKEN },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  gateway.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  url = `http://127.0.0.1:${port}/mcp`;
  // Wait until the listener answers (any HTTP answer will do).
  for (let i = 0; ; i++) {
    const up = await fetch(url, { method: 'POST' }).then(() => true, () => false);
    if (up) break;
    if (i > 100) throw new Error(`gateway did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }
  await sshd?.stop();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

async function connect(
  token?: string,
  human?: (message: string) => { action: 'accept' | 'decline'; content?: Record<string, string | number | boolean | string[]> },
  era: 'legacy' | 'modern' = 'modern',
): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { authorization: `Bearer ${token}` } } : undefined,
  });
  const client = new Client({ name: 'http-test', version: '1.0.0' }, { capabilities: human ? { elicitation: { form: {} } } : {}, versionNegotiation: { mode: era === 'modern' ? 'auto' : 'legacy' } });
  if (human) client.setRequestHandler('elicitation/create', async (request) => human((request.params as { message: string }).message));
  await client.connect(transport);
  return client;
}

test('over HTTP, a confirm command runs after the remote human approves, and not after a decline', async () => {
  const asked: string[] = [];
  const yes = await connect(TOKEN, (message) => {
    asked.push(message);
    return { action: 'accept', content: { approve: true } };
  });
  try {
    const result = await yes.callTool({ name: 'run_command', arguments: { connection: 'guarded', command: 'echo approvedhttp' } });
    assert.notEqual(result.isError, true, JSON.stringify(result.content));
    assert.equal((result.structuredContent as { stdout: string }).stdout, 'approvedhttp\n');
    assert.equal(asked.length, 1);
  } finally {
    await yes.close();
  }
  const no = await connect(TOKEN, () => ({ action: 'decline' }));
  try {
    const result = await no.callTool({ name: 'run_command', arguments: { connection: 'guarded', command: 'echo approvednot' } });
    assert.equal(result.isError, true);
    assert.match((result.content as { text: string }[])[0].text, /declined/);
  } finally {
    await no.close();
  }
});

test('a request without the bearer token is refused with 401 and runs nothing', async () => {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(response.status, 401);
  assert.match(response.headers.get('www-authenticate') ?? '', /Bearer/);
  const wrong = await fetch(url, { method: 'POST', headers: { authorization: 'Bearer not-the-token-at-all-123456' } });
  assert.equal(wrong.status, 401);
  await assert.rejects(connect());
});

test('with the token, the MCP client runs a command over HTTP and the audit log names the principal', async () => {
  const client = await connect(TOKEN);
  try {
    const result = await client.callTool({ name: 'run_command', arguments: { connection: 'dev1', command: 'echo over-http' } });
    assert.notEqual(result.isError, true, JSON.stringify(result.content));
    assert.equal((result.structuredContent as { stdout: string }).stdout, 'over-http\n');
  } finally {
    await client.close();
  }
  const records = (await readFile(auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const call = records.find((r) => r.event === 'tool_call' && r.tool === 'run_command');
  assert.ok(call, 'tool_call record present');
  assert.equal((call.client as { principal?: string }).principal, 'ci-agent');
  assert.equal((call.client as { transport?: string }).transport, 'http');
  assert.ok(records.some((r) => r.event === 'http_auth_failed'), 'refused requests are audited');
  assert.ok(!JSON.stringify(records).includes(TOKEN), 'the token never reaches the audit log');
});

test('a 2025-era client over stateless HTTP is told why it cannot be asked, and nothing runs', async () => {
  const legacy = await connect(TOKEN, () => ({ action: 'accept', content: { approve: true } }), 'legacy');
  try {
    const plain = await legacy.callTool({ name: 'run_command', arguments: { connection: 'dev1', command: 'echo legacy' } });
    assert.equal((plain.structuredContent as { stdout: string }).stdout, 'legacy\n');
    const result = await legacy.callTool({ name: 'run_command', arguments: { connection: 'guarded', command: 'echo approvedlegacy' } });
    assert.equal(result.isError, true);
    assert.match((result.content as { text: string }[])[0].text, /2025 MCP protocol over stateless HTTP/);
  } finally {
    await legacy.close();
  }
});

test('nothing but /mcp is served', async () => {
  const response = await fetch(url.replace('/mcp', '/'), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(response.status, 404);
});

test('a listener on another loopback address serves its own Host; a flood of bad tokens is summarised in the audit', async () => {
  const port = await freePort('127.0.0.2');
  const { dir, configPath } = await writeConfig({
    gateway: { http: { listen: `127.0.0.2:${port}`, tokens: [{ name: 'ci-agent', token_env: 'MCPGW_TEST_TOKEN' }] } },
    connections: [directConnection(sshd)],
  });
  const second = spawn(process.execPath, [CLI, 'serve', '--config', configPath], { env: { ...process.env, MCPGW_TEST_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
  second.stderr?.resume();
  const secondUrl = `http://127.0.0.2:${port}/mcp`;
  try {
    for (let i = 0; !(await fetch(secondUrl, { method: 'POST' }).then(() => true, () => false)); i++) {
      if (i > 100) throw new Error('second gateway did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(secondUrl), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    const listed = await client.callTool({ name: 'list_connections', arguments: {} });
    assert.equal(listed.isError, undefined, 'Host 127.0.0.2 is accepted on a 127.0.0.2 listener');
    await client.close();

    for (let i = 0; i < 60; i++) assert.equal((await fetch(secondUrl, { method: 'POST', headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
  } finally {
    const exited = new Promise((r) => second.once('exit', r));
    second.kill('SIGTERM');
    await exited;
  }
  const records = (await readFile(`${dir}/audit.log`, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { event: string; counts?: Record<string, number> });
  const written = records.filter((r) => r.event === 'http_auth_failed').length;
  const held = records.filter((r) => r.event === 'http_auth_failed_suppressed').reduce((sum, r) => sum + (r.counts?.http_auth_failed ?? 0), 0);
  assert.ok(written <= 20, `${written} failures written one by one`);
  assert.equal(written + held, 60 + 1, 'every failure is counted (the first probe of the listener too)');
  await rm(dir, { recursive: true, force: true });
});
