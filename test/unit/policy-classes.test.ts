// The classes of bypass an adversarial review found around the shell reader, each closed at its root:
// the text patterns see, `..` wherever a path stands, globs that reach `..`, scripts inside scripts, and
// structured rules that need no regex at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateCommand, evaluateFileAccess, parseCommandLine, policyWarnings, structuredRuleSchema, type Policy, type PolicyDecision } from '../../src/policy/index.js';

function verdict(got: PolicyDecision): string {
  return got.decision === 'allow' ? 'allow' : `${got.decision}:${got.rule}`;
}

async function decide(line: string, policy: Policy): Promise<string> {
  return verdict(await evaluateCommand(line, policy));
}

// --- the text patterns see is an injective encoding of argv -------------------------------------------

test('a word with a quote or other unsafe characters is single-quoted whole; safe words stand as they are', async () => {
  const cases: [string, string][] = [
    ['grep -F "\'" -e root /etc/shadow "x\'" /var/log/syslog.log', "grep -F ''\\''' -e root /etc/shadow 'x'\\''' /var/log/syslog.log"],
    ["find /var/log -name 'x -exec rm {} ;'", "find /var/log -name 'x -exec rm {} ;'"],
    ['echo a\\ b "c d" e', "echo 'a b' 'c d' e"],
    ['ls /var/log/*.log', 'ls /var/log/*.log'],
    ["ls '/var/log/*.log'", "ls '/var/log/*.log'"],
    ['ls "/my dir/"*', "ls '/my dir/'*"],
    ["echo '' x", "echo '' x"],
    ["'A=x' ls", "'A=x' ls"],
    ['A=x ls', 'A=x ls'],
    ['dd if=/dev/zero of=/dev/null count=1', 'dd if=/dev/zero of=/dev/null count=1'],
    ['echo ~x', "echo '~x'"],
    ['echo "#"', "echo '#'"],
  ];
  for (const [line, text] of cases) {
    const parsed = await parseCommandLine(line);
    assert.equal(parsed.commands[0]?.text, text, line);
  }
});

test('different argv never read the same (a randomized check of the encoding)', async () => {
  const alphabet = ['a', '-', "'", '"', ' ', '*', '\\', '=', '$', 'é', '/', '.', '[', ']', '{', '}', ';'];
  const seen = new Map<string, string>();
  let read = 0;
  let seed = 7;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 400; i += 1) {
    const words = Array.from({ length: 1 + next(3) }, () => Array.from({ length: next(5) }, () => alphabet[next(alphabet.length)]).join(''));
    // Each word reaches the shell single-quoted, so argv is exactly `words` (globbing off).
    const line = ['echo', ...words].map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
    const parsed = await parseCommandLine(line);
    if (!parsed.ok) continue; // e.g. `é\`, refused for the multibyte trap: nothing to encode
    read += 1;
    const key = JSON.stringify(parsed.commands[0]!.argv);
    const text = parsed.commands[0]!.text;
    assert.ok(!seen.has(text) || seen.get(text) === key, `${text} stands for both ${seen.get(text)} and ${key}`);
    seen.set(text, key);
  }
  assert.ok(read > 300, `only ${read} of 400 lines were read`);
});

test("a rule admitting one quoted argument doesn't admit extra arguments", async () => {
  const policy: Policy = { allow: ["^grep -F '[^']*' /var/log/[a-z]+\\.log$", "^find /var/log -name '[^']*'$"] };
  assert.equal(await decide("grep -F 'two words' /var/log/syslog.log", policy), 'allow');
  assert.equal(await decide('grep -F "\'" -e root /etc/shadow "x\'" /var/log/syslog.log', policy), 'deny:allow (no match)');
  assert.equal(await decide("find /var/log -name '*.gz'", policy), 'allow');
  assert.equal(await decide("find /var/log -name \"x' -exec touch /tmp/p ; -name 'y\"", policy), 'deny:allow (no match)');
  assert.equal(await decide("find /var/log -name \"'\" -exec touch /tmp/p ';' -name \"'\"", policy), 'deny:allow (no match)');
});

// --- `..` wherever a path stands -----------------------------------------------------------------------

const LOGS: Policy = {
  allow: ['^cat( /var/log/[\\w./-]+)?$', '^</var/log/[\\w./-]+$', '^uptime$', '^>/var/tmp/reports/[\\w./-]+$', '^X=/var/log/[\\w./-]+ cat$'],
};

test('.. is refused in redirection targets, assignment values and option values, not only in plain arguments', async () => {
  for (const line of [
    'cat </var/log/../../etc/shadow',
    'cat < /var/log/x/../../../etc/shadow',
    'uptime > /var/tmp/reports/../../../etc/cron.d/x',
    'uptime >/var/tmp/reports/..',
    'X=/var/log/../../etc/shadow cat',
    'cat /var/log/../../etc/shadow',
  ]) {
    assert.equal(await decide(line, LOGS), 'deny:allow (no match)', line);
    const got = await evaluateCommand(line, LOGS);
    assert.ok(got.decision === 'deny' && got.reason.includes('..'), JSON.stringify(got));
  }
  const dd: Policy = { allow: ['^dd if=/var/log/[\\w./-]+$'] };
  assert.equal(await decide('dd if=/var/log/../../etc/shadow', dd), 'deny:allow (no match)');
  assert.equal(await decide('cat </var/log/syslog', LOGS), 'allow');
  assert.equal(await decide('uptime >/var/tmp/reports/today.txt', LOGS), 'allow');
  assert.equal(await decide('cat /var/log/a..b', LOGS), 'allow', '`..` inside a name is not a segment');
});

// --- globs that can match `.` and `..` ----------------------------------------------------------------

test('a glob in a segment that starts with "." is refused when it can match . or ..', async () => {
  const star: Policy = { allow: ['^cat /var/log/\\S+$', '^ls -d /var/log/\\S+$'] };
  for (const line of ['cat /var/log/.*/.*/etc/shadow', 'cat /var/log/.?/.?/etc/shadow', 'cat /var/log/..*/etc/shadow', 'cat /var/log/.[.]/etc/shadow', 'cat /var/log/.[!a]/x', 'cat /var/log/.[--0]/x', 'cat /var/log/.*']) {
    const got = await evaluateCommand(line, star);
    assert.equal(verdict(got), 'deny:uncertain', line);
    assert.ok(got.decision === 'deny' && got.reason.includes('`..`'), JSON.stringify(got));
  }
  for (const line of ['ls -d /var/log/.??*', 'ls -d /var/log/.[!.]*', "cat /var/log/.[a-z]*", 'cat /var/log/.[+-/]/x', 'ls -d /var/log/x*.log']) {
    assert.equal(await decide(line, star), 'allow', line);
  }
  assert.equal((await parseCommandLine("cat /var/log/'.*'")).ok, true, 'a quoted .* is a literal name');
  // Under a deny-only policy too: what the device will open is not what the text says.
  assert.equal(await decide('cat /var/log/.*/.*/etc/shadow', { deny: ['shadow$'] }), 'deny:deny[0]: shadow$');
  assert.equal(await decide('cat /var/log/.*/.*/etc/passwd', { deny: ['shadow$'] }), 'deny:uncertain');
});

// --- scripts inside scripts ---------------------------------------------------------------------------

const NO_TOUCH: Policy = { deny: ['\\btouch\\b'] };

test('the script given to a shell or eval is judged as a command line of its own', async () => {
  for (const line of [
    "sh -c \"t''ouch x\"",
    "bash -c 't\"\"ouch x'",
    "dash -ec 't\\ouch x'",
    "eval \"t''ouch x\"",
    "eval t''ouch x",
    "busybox sh -c \"t''ouch x\"",
    "sudo -u root sh -c \"t''ouch x\"",
    "env -i sh -c \"t''ouch x\"",
    "nice -n 5 bash -c \"t''ouch x\"",
    "timeout 5 sh -c \"t''ouch x\"",
    "/bin/sh -c \"t''ouch x\"",
    "sh -c \"sh -c 't\"\"ouch x'\"",
    "find /tmp -maxdepth 0 -exec sh -c \"t''ouch x\" \\;",
    "su -c \"t''ouch x\"",
    "command eval \"t''ouch x\"",
  ]) {
    assert.equal(await decide(line, NO_TOUCH), 'deny:deny[0]: \\btouch\\b', line);
  }
});

test('a shell that reads its commands from stdin or a file, or from xargs, is uncertain', async () => {
  for (const line of [
    "echo \"t''ouch x\" | sh",
    "echo \"t''ouch x\" | bash -s",
    'sh /tmp/script.sh',
    '. /tmp/script.sh',
    'source /tmp/script.sh',
    "echo \"t''ouch x\" | xargs -I{} sh -c {}",
    'find /tmp -exec sh -c {} \\;',
    "sh -c 'echo $1' x",
    "sh -c 'ls |'",
  ]) {
    assert.equal(await decide(line, NO_TOUCH), 'deny:uncertain', line);
  }
  assert.equal(await decide("sh -c 'uptime; df -h'", NO_TOUCH), 'allow');
  const shellOk: Policy = { allow: ["^sh -c (?:'[^']*'|\\w+)$", '^uptime$'] };
  assert.equal(await decide("sh -c 'uptime; reboot'", shellOk), 'deny:allow (no match)', 'every command of the script must be allowed too');
  assert.equal(await decide("sh -c 'uptime'", shellOk), 'allow');
});

// --- structured rules ---------------------------------------------------------------------------------

const STRUCTURED: Policy = {
  allow: [
    { argv: ['systemctl', 'status', { type: 'string', pattern: '^[\\w@.][\\w@.-]*$' }] },
    { argv: ['tail', '-n', { type: 'integer', min: 1, max: 500 }, { type: 'path', roots: ['/var/log'] }] },
    { argv: ['journalctl', '-u', { type: 'enum', values: ['nginx', 'ssh'] }] },
    { argv: ['echo', { type: 'string' }] },
    { argv: ['>', { type: 'path', roots: ['/var/tmp/reports'] }] },
    { argv: ['read_file', { type: 'path', roots: ['/var/log'] }] },
  ],
  deny: [{ argv: ['tail', '-n', '500', { type: 'rest' }] }],
  confirm: [{ argv: ['systemctl', 'restart', { type: 'enum', values: ['nginx'] }] }],
};

test('structured rules: words line up one for one with typed slots', async () => {
  assert.equal(await decide('systemctl status nginx.service', STRUCTURED), 'allow');
  assert.equal(await decide('systemctl status -Hroot@host', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('systemctl status nginx extra', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('journalctl -u ssh', STRUCTURED), 'allow');
  assert.equal(await decide('journalctl -u cron', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('echo hello', STRUCTURED), 'allow');
  assert.equal(await decide("echo '-n'", STRUCTURED), 'deny:allow (no match)', 'a string slot without a pattern never starts with -');
  assert.equal(await decide('echo "a b"', STRUCTURED), 'allow', 'a quoted word is one word');
  assert.equal(await decide('echo a b', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('echo *', STRUCTURED), 'deny:uncertain');
  assert.equal(await decide('echo x*', STRUCTURED), 'deny:allow (no match)', 'a word the device globs never matches a slot');
  assert.equal(await decide('X=1 echo hi', STRUCTURED), 'deny:allow (no match)', 'assignments never match a structured rule');
  assert.equal(await decide('tail -n 501 /var/log/syslog', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('tail -n 500 /var/log/syslog', STRUCTURED), 'deny:deny[0]: tail -n 500 <any further words>');
  assert.equal(await decide('tail -n 20 /etc/shadow', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('tail -n 20 /var/log/../../etc/shadow', STRUCTURED), 'deny:allow (no match)');
  assert.equal(await decide('echo hi > /var/tmp/reports/a.txt', STRUCTURED), 'allow');
  assert.equal(await decide('echo hi > /etc/cron.d/x', STRUCTURED), 'deny:allow (no match)');
  const restart = await evaluateCommand('systemctl restart nginx', STRUCTURED);
  assert.equal(verdict(restart), 'confirm:confirm[0]: systemctl restart <one of "nginx">');
});

test('path slots come back for the device to resolve; file tools use the same rules', async () => {
  const got = await evaluateCommand('tail -n 20 /var/log/syslog', STRUCTURED);
  assert.deepEqual(got, { decision: 'allow', paths: [{ param: 'argv[3]', value: '/var/log/syslog', roots: ['/var/log'] }] });
  const write = await evaluateCommand('echo hi > /var/tmp/reports/a.txt', STRUCTURED);
  assert.deepEqual(write.decision === 'allow' ? write.paths?.map((p) => p.value) : undefined, ['/var/tmp/reports/a.txt']);
  assert.equal(verdict(evaluateFileAccess('read', '/var/log/syslog', STRUCTURED)), 'allow');
  assert.equal(verdict(evaluateFileAccess('read', '/etc/shadow', STRUCTURED)), 'deny:allow (no match)');
  assert.equal(verdict(evaluateFileAccess('write', '/var/log/syslog', STRUCTURED)), 'deny:allow (no match)');
});

test('structured rules are validated and warned about', () => {
  assert.ok(!structuredRuleSchema.safeParse({ argv: [{ type: 'rest' }, 'x'] }).success, 'rest only last');
  assert.ok(!structuredRuleSchema.safeParse({ argv: [{ type: 'string', default: 'x' }] }).success, 'no defaults');
  assert.ok(!structuredRuleSchema.safeParse({ argv: [] }).success, 'not empty');
  assert.ok(structuredRuleSchema.safeParse(STRUCTURED.allow![1]).success);
  const warnings = policyWarnings({
    allow: [{ argv: ['ls', { type: 'rest' }] }, { argv: ['systemctl', 'status', { type: 'string', pattern: '[\\w@.-]+' }] }, { argv: ['uptime'] }],
  });
  assert.equal(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /allow\[0\].*admits any further words/);
  assert.match(warnings[1]!, /allow\[1\].*starting with "-"/);
});

test("the README's example policy is valid, draws no warning, and means what it says", async () => {
  const { readFileSync } = await import('node:fs');
  const { policySchema } = await import('../../src/config/schema.js');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('"policy": {');
  const example = JSON.parse(`{${readme.slice(start, readme.indexOf('```', start))}}`) as { policy: Policy };
  assert.ok(policySchema.safeParse(example.policy).success);
  assert.deepEqual(policyWarnings(example.policy), []);
  assert.equal(await decide('systemctl status nginx.service', example.policy), 'allow');
  assert.equal(await decide('systemctl status -Hroot@host', example.policy), 'deny:allow (no match)');
  assert.equal(await decide('reboot now', example.policy), 'deny:deny[0]: reboot <any further words>');
  assert.equal(verdict(evaluateFileAccess('read', '/var/log/syslog', example.policy)), 'allow');
});
