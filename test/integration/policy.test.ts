// Policy, actions and human approval against a real sshd, driven through the real MCP client.
// Every bypass attempt tries to create a marker file on the device; the promise is that none ever does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sshd } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';

let sshd: Sshd;
let gw: GatewayUnderTest;
let work: string;
let marker: string;
/** A symlink to `work`, as an action root: roots can be links on real devices too (/var/run → /run). */
let linkedRoot: string;

const allow = [
  '^ls( -[a-zA-Z]+)*( /[\\w./-]*)?$',
  '^cat /etc/[\\w.-]+$',
  '^uptime$',
  '^echo [\\w .,-]*$',
  '^systemctl status [\\w@.-]+$',
];

before(async () => {
  sshd = await Sshd.start();
  work = await mkdtemp(path.join(tmpdir(), 'mcpgw-policy-'));
  marker = path.join(work, 'MARKER');
  // For the `for PATH` attempt: an `ls` that would create the marker if the policy let the line through.
  await mkdir(path.join(work, 'evilbin'));
  await writeFile(path.join(work, 'evilbin', 'ls'), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
  linkedRoot = `${work}-link`;
  await symlink(work, linkedRoot);
  gw = await startGateway({
    connections: [
      directConnection(sshd, 'guarded', {
        policy: { allow, deny: ['\\brm\\b'], confirm: ['^touch /tmp/mcpgw-approved-\\w+$'] },
        actions: {
          greet: {
            description: 'Print a greeting',
            command: 'echo hello {{who}}',
            params: { who: { type: 'string', pattern: '^[\\s\\S]*$', max_length: 200 } },
          },
          show_log: {
            description: 'Show the last lines of a log file',
            command: 'tail -n {{lines}} {{file}}',
            params: { lines: { type: 'integer', min: 1, max: 500 }, file: { type: 'path', roots: ['/var/log', work] } },
          },
          show_linked_log: {
            description: 'Show the last line of a log file under the linked root',
            command: 'tail -n 1 {{file}}',
            params: { file: { type: 'path', roots: [linkedRoot] } },
          },
        },
      }),
      directConnection(sshd, 'readonly', { policy: { read_only: true } }),
    ],
  });
});

after(async () => {
  await gw?.close();
  await sshd?.stop();
  await rm(work, { recursive: true, force: true });
  await rm(linkedRoot, { force: true });
});

function attempts(m: string): [string, string][] {
  return [
    ['semicolon', `ls; touch ${m}`],
    ['and-list', `ls && touch ${m}`],
    ['or-list', `ls /nonexistent || touch ${m}`],
    ['pipe', `ls | touch ${m}`],
    ['newline', `ls\ntouch ${m}`],
    ['carriage return', `ls\r\ntouch ${m}`],
    ['command substitution', `ls $(touch ${m})`],
    ['backticks', `ls \`touch ${m}\``],
    ['substitution in allowed echo', `echo $(touch ${m})`],
    ['process substitution', `cat <(touch ${m})`],
    ['output process substitution', `ls >(touch ${m})`],
    ['redirect create', `echo hi > ${m}`],
    ['redirect append', `echo hi >> ${m}`],
    ['stderr redirect', `ls 2> ${m}`],
    ['background', `uptime & touch ${m}`],
    ['subshell', `(touch ${m})`],
    ['group', `{ touch ${m}; }`],
    ['function definition', `f() { touch ${m}; }; f`],
    ['env wrapper', `env touch ${m}`],
    ['env with assignment', `env X=1 touch ${m}`],
    ['sh -c', `sh -c 'touch ${m}'`],
    ['bash -c', `bash -c "touch ${m}"`],
    ['exec', `exec touch ${m}`],
    ['eval', `eval touch ${m}`],
    ['backslash in name', `\\touch ${m}`],
    ['split quoting', `t'ou'ch ${m}`],
    ['double-quoted name', `"touch" ${m}`],
    ['absolute path', `/usr/bin/touch ${m}`],
    ['ANSI-C quoting', `$'\\x74ouch' ${m}`],
    ['IFS trick', `ls\${IFS}/;touch\${IFS}${m}`],
    ['variable as command', `T=touch; $T ${m}`],
    ['brace expansion', `{touch,${m}}`],
    ['glob command name', `/usr/bin/tou?h ${m}`],
    ['here-doc with substitution', `cat <<EOF\n$(touch ${m})\nEOF`],
    ['here-string to xargs', `xargs touch <<< ${m}`],
    ['comment then newline', `ls /tmp # harmless\ntouch ${m}`],
    ['line continuation', `ls \\\n; touch ${m}`],
    ['tee from allowed echo', `echo hi | tee ${m}`],
    ['nice wrapper', `nice touch ${m}`],
    ['timeout wrapper', `timeout 5 touch ${m}`],
    ['busybox', `busybox touch ${m}`],
    ['fullwidth look-alike', `ｔｏｕｃｈ ${m}`],
    ['cyrillic look-alike ls', `lѕ; touch ${m}`],
    ['NUL byte', `ls\u0000; touch ${m}`],
    ['bidi override', `ls \u202e; touch ${m}`],
    ['very long line', `echo ${'a'.repeat(20_000)}; touch ${m}`],
    ['oversize line', `echo ${'a'.repeat(100_000)}; touch ${m}`],
    ['deny inside allowed shape', `rm -f ${m}`],
    ['arithmetic expansion', `echo $((1+1)); touch ${m}`],
    ['for with an arithmetic variable', `for RANDOM in 'a[$(touch ${m})]'; do uptime; done`],
    ['for with an ordinary variable', `for x in 'a[$(touch ${m})]'; do uptime; done`],
    ['for PATH: an allowed name runs another program', `for PATH in ${path.join(path.dirname(m), 'evilbin')}; do ls; done`],
    ['&> read by a POSIX sh as & and a new command', `echo &>/dev/null touch ${m}`],
  ];
}

test('a table of bypass attempts never reaches the device: the marker file is never created', async () => {
  const table = attempts(marker);
  assert.ok(table.length >= 30);
  for (const [label, command] of table) {
    const result = await gw.client.callTool({ name: 'run_command', arguments: { connection: 'guarded', command } });
    assert.equal(result.isError, true, `${label}: expected a refusal, got ${JSON.stringify(result.structuredContent)}`);
    const text = (result.content as { text: string }[])[0].text;
    assert.match(text, /refused|Nothing was run|limit|Too big/i, `${label}: ${text}`);
    assert.equal(existsSync(marker), false, `${label}: the marker file was created`);
  }
  // The audit log shows each refusal and not one of them started a command.
  const records = readFileSync(gw.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; connection?: string });
  assert.ok(records.filter((r) => r.event === 'policy_denial').length >= table.length - 2);
  assert.equal(records.filter((r) => r.event === 'command_start' && r.connection === 'guarded').length, 0);
});

test('allowed commands run, and a refusal names the rule and the actions allowed instead', async () => {
  const ok = await callOk<{ exit_code: number; stdout: string }>(gw, 'run_command', { connection: 'guarded', command: 'echo allowed' });
  assert.equal(ok.stdout, 'allowed\n');
  const refusal = await callError(gw, 'run_command', { connection: 'guarded', command: 'whoami' });
  assert.match(refusal, /allow/);
  assert.match(refusal, /run_action/);
  assert.match(refusal, /greet/);
});

test('env is refused under a policy, since it could change what runs', async () => {
  const refusal = await callError(gw, 'run_command', { connection: 'guarded', command: 'echo x', env: { PATH: work } });
  assert.match(refusal, /environment/);
});

test('cwd is refused under a policy, since relative paths would reach elsewhere', async () => {
  const refusal = await callError(gw, 'run_command', { connection: 'guarded', command: 'ls', cwd: '/etc' });
  assert.match(refusal, /absolute paths/);
});

test('read_only refuses redirections that write, and allows the rest', async () => {
  const refusal = await callError(gw, 'run_command', { connection: 'readonly', command: `echo data > ${marker}` });
  assert.match(refusal, /read_only|read-only|writes/i);
  assert.equal(existsSync(marker), false);
  const ok = await callOk<{ stdout: string }>(gw, 'run_command', { connection: 'readonly', command: 'echo fine' });
  assert.equal(ok.stdout, 'fine\n');
});

test('an action with a hostile parameter runs it as a harmless literal', async () => {
  for (const hostile of [`; touch ${marker} #`, `$(touch ${marker})`, `\`touch ${marker}\``, `'; touch ${marker}; '`, `a\ntouch ${marker}`]) {
    const result = await callOk<{ exit_code: number; stdout: string }>(gw, 'run_action', { connection: 'guarded', action: 'greet', params: { who: hostile } });
    assert.equal(result.exit_code, 0);
    assert.equal(result.stdout, `hello ${hostile}\n`);
    assert.equal(existsSync(marker), false, `hostile param ${JSON.stringify(hostile)} created the marker`);
  }
});

test('actions validate their parameters and say what is allowed', async () => {
  const badInt = await callError(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 100000, file: '/var/log/syslog' } });
  assert.match(badInt, /lines/);
  const badPath = await callError(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 5, file: '/etc/shadow' } });
  assert.match(badPath, /file/);
  const escape = await callError(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 5, file: `${work}/../../etc/shadow` } });
  assert.match(escape, /file/);
  const unknown = await callError(gw, 'run_action', { connection: 'guarded', action: 'nope' });
  assert.match(unknown, /greet/);
  for (const builtIn of ['constructor', '__proto__', 'toString']) {
    assert.match(await callError(gw, 'run_action', { connection: 'guarded', action: builtIn }), new RegExp(`no action "${builtIn}" on "guarded". Actions there: greet`));
  }
  const logFile = path.join(work, 'app.log');
  await import('node:fs/promises').then((fs) => fs.writeFile(logFile, 'one\ntwo\nthree\n'));
  const tail = await callOk<{ stdout: string }>(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 2, file: logFile } });
  assert.equal(tail.stdout, 'two\nthree\n');
});

test('a path parameter is judged where the device resolves it: a symlink out of the roots is refused', async () => {
  const secretDir = await mkdtemp(path.join(tmpdir(), 'mcpgw-secret-'));
  try {
    const secret = path.join(secretDir, 'secret.txt');
    await writeFile(secret, 'TOP SECRET\n');
    await symlink(secret, path.join(work, 'escape.log'));
    const refused = await callError(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 5, file: path.join(work, 'escape.log') } });
    assert.ok(refused.includes(`resolves (symlinks followed) to ${secret}, outside /var/log or ${work}`), refused);
    assert.match(refused, /Nothing was run/);
    assert.ok(!refused.includes('TOP SECRET'));
    const records = (await readFile(gw.auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(records.some((r) => r.event === 'action_rejected' && String(r.reason).includes(secret)), 'the refusal is audited');
    assert.ok(!records.some((r) => r.event === 'command_start' && String(r.command).includes('escape.log')), 'nothing ran');

    // Links that stay inside the roots are fine, and a root that is itself a link is judged by its target.
    await writeFile(path.join(work, 'real.log'), 'first\nlast\n');
    await symlink(path.join(work, 'real.log'), path.join(work, 'alias.log'));
    const viaAlias = await callOk<{ stdout: string }>(gw, 'run_action', { connection: 'guarded', action: 'show_log', params: { lines: 1, file: path.join(work, 'alias.log') } });
    assert.equal(viaAlias.stdout, 'last\n');
    const viaLinkedRoot = await callOk<{ stdout: string }>(gw, 'run_action', { connection: 'guarded', action: 'show_linked_log', params: { file: path.join(linkedRoot, 'real.log') } });
    assert.equal(viaLinkedRoot.stdout, 'last\n');
    const outOfLinkedRoot = await callError(gw, 'run_action', { connection: 'guarded', action: 'show_linked_log', params: { file: path.join(linkedRoot, 'escape.log') } });
    assert.ok(outOfLinkedRoot.includes(`to ${secret}, outside ${linkedRoot}`), outOfLinkedRoot);
  } finally {
    await rm(secretDir, { recursive: true, force: true });
  }
});

test('the action list is in the run_action tool description', async () => {
  const { tools } = await gw.client.listTools();
  const runAction = tools.find((t) => t.name === 'run_action');
  assert.match(runAction?.description ?? '', /greet/);
  assert.match(runAction?.description ?? '', /show_log/);
});

test('a confirm command is refused when the client cannot ask its human', async () => {
  const target = `/tmp/mcpgw-approved-${process.pid}a`;
  const refusal = await callError(gw, 'run_command', { connection: 'guarded', command: `touch ${target}` });
  assert.match(refusal, /elicitation/);
  assert.equal(existsSync(target), false);
});

async function gatewayWithHuman(
  answer: (message: string) => { action: 'accept' | 'decline' | 'cancel'; content?: Record<string, string | number | boolean | string[]> },
  era: 'legacy' | 'modern' = 'legacy',
): Promise<{ gw: GatewayUnderTest; asked: string[] }> {
  const asked: string[] = [];
  const human = await startGateway(
    { connections: [directConnection(sshd, 'guarded', { policy: { allow, confirm: ['^touch /tmp/mcpgw-approved-\\w+$'] } })] },
    {
      era,
      capabilities: { elicitation: { form: {} } },
      setup: (client) =>
        client.setRequestHandler('elicitation/create', async (request) => {
          const message = (request.params as { message: string }).message;
          asked.push(message);
          return answer(message);
        }),
    },
  );
  return { gw: human, asked };
}

for (const era of ['legacy', 'modern'] as const) {
  test(`a confirm command runs only after the human says yes through the client (${era} protocol era)`, async () => {
    const target = `/tmp/mcpgw-approved-${process.pid}b${era}`;
    const { gw: human, asked } = await gatewayWithHuman(() => ({ action: 'accept', content: { approve: true } }), era);
    try {
      const result = await callOk<{ exit_code: number }>(human, 'run_command', { connection: 'guarded', command: `touch ${target}` });
      assert.equal(result.exit_code, 0);
      assert.equal(asked.length, 1);
      assert.match(asked[0], new RegExp(target));
      assert.equal(existsSync(target), true);
      const events = readFileSync(human.auditPath, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event: string }).event);
      assert.ok(events.includes('approval_asked') && events.includes('approval_granted'));
    } finally {
      await rm(target, { force: true });
      await human.close();
    }
  });
}

test('the human approving a command sees the stdin it gets: size, sha256 and its start', async () => {
  const target = `/tmp/mcpgw-approved-${process.pid}stdin`;
  const { gw: human, asked } = await gatewayWithHuman(() => ({ action: 'decline' }));
  try {
    const stdin = 'echo this-is-the-script\n';
    await callError(human, 'run_command', { connection: 'guarded', command: `touch ${target}`, stdin });
    assert.equal(asked.length, 1);
    assert.ok(asked[0]!.includes(`with stdin: ${stdin.length} bytes, sha256 ${createHash('sha256').update(stdin).digest('hex')}, starting: echo this-is-the-script\\x0a`), asked[0]);
    assert.equal(existsSync(target), false);
  } finally {
    await human.close();
  }
});

test('run_on_many never asks a human and refuses a confirm command on each device', async () => {
  const target = `/tmp/mcpgw-approved-${process.pid}many`;
  const { gw: human, asked } = await gatewayWithHuman(() => ({ action: 'accept', content: { approve: true } }));
  try {
    const fanned = await callOk<{ failed: number; groups: { error?: string }[] }>(human, 'run_on_many', { connections: ['guarded'], command: `touch ${target}` });
    assert.equal(fanned.failed, 1);
    assert.match(fanned.groups[0]!.error ?? '', /cannot ask for approval per device/);
    assert.equal(asked.length, 0, 'fan-out never asks');
    assert.equal(existsSync(target), false);
  } finally {
    await human.close();
  }
});

test('a declined or cancelled approval refuses the command (both protocol eras)', async () => {
  for (const [action, era] of [['decline', 'legacy'], ['cancel', 'legacy'], ['decline', 'modern'], ['cancel', 'modern']] as const) {
    const target = `/tmp/mcpgw-approved-${process.pid}${action}${era}`;
    const { gw: human, asked } = await gatewayWithHuman(() => ({ action }), era);
    try {
      const refusal = await callError(human, 'run_command', { connection: 'guarded', command: `touch ${target}` });
      assert.match(refusal, /declined/);
      assert.equal(asked.length, 1);
      assert.equal(existsSync(target), false);
      const events = readFileSync(human.auditPath, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event: string }).event);
      assert.ok(events.includes('approval_refused'));
    } finally {
      await human.close();
    }
  }
});

test('accepting with approve=false is a refusal too', async () => {
  const target = `/tmp/mcpgw-approved-${process.pid}c`;
  const { gw: human } = await gatewayWithHuman(() => ({ action: 'accept', content: { approve: false } }));
  try {
    await callError(human, 'run_command', { connection: 'guarded', command: `touch ${target}` });
    assert.equal(existsSync(target), false);
  } finally {
    await human.close();
  }
});
