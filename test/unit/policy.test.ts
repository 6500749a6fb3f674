// The policy gate's promises, checked against hostile command lines: a refused part anywhere in a line
// refuses the line, quoting can't disguise a command, and what can't be read with certainty is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  evaluateCommand,
  compilePolicy,
  policyWarnings,
  parseCommandLine,
  MAX_COMMAND_BYTES,
  type Policy,
  type PolicyDecision,
} from '../../src/policy/index.js';

const ALLOW = [
  '^ls( -[a-zA-Z]+)*( /[\\w./-]*)?$',
  '^cat /etc/[\\w.-]+$',
  '^systemctl status [\\w@.-]+$',
  '^uptime$',
  '^df -h$',
];
const DENY = ['\\brm\\b'];
const CONFIRM = ['^systemctl restart [\\w@.-]+$'];

const policy: Policy = { allow: ALLOW, deny: DENY, confirm: CONFIRM };
const readOnly: Policy = { ...policy, read_only: true };

const DENY_RM = 'deny[0]: \\brm\\b';
const NO_ALLOW = 'allow (no match)';
const CONFIRM_RESTART = 'confirm[0]: ^systemctl restart [\\w@.-]+$';

type Expected = 'allow' | { decision: 'deny' | 'confirm'; rule: string };

function deny(rule: string): Expected {
  return { decision: 'deny', rule };
}

async function assertDecision(line: string, expected: Expected, p: Policy = policy): Promise<PolicyDecision> {
  const got = await evaluateCommand(line, p);
  if (expected === 'allow') {
    assert.deepEqual(got, { decision: 'allow' }, `${JSON.stringify(line)}: ${JSON.stringify(got)}`);
  } else {
    const summary = { decision: got.decision, rule: 'rule' in got ? got.rule : undefined };
    assert.deepEqual(summary, expected, `${JSON.stringify(line)}: ${JSON.stringify(got)}`);
    assert.ok('reason' in got && got.reason.length > 10, 'a refusal says why');
  }
  return got;
}

// [name, line, expected decision, policy?]
const HOSTILE: [string, string, Expected, Policy?][] = [
  ['`;` appends a denied command', 'ls; rm -rf /', deny(DENY_RM)],
  ['`&&` appends an unlisted command', 'ls && reboot', deny(NO_ALLOW)],
  ['`||` appends an unlisted command', 'ls /nope || reboot', deny(NO_ALLOW)],
  ['a pipe into a shell (it reads commands the policy cannot see)', 'ls | sh', deny('uncertain')],
  ['`|&` pipe', 'uptime |& sh', deny('uncertain')],
  ['a newline starts a second command', 'ls\nreboot', deny(NO_ALLOW)],
  ['`&` then a second command', 'uptime & reboot', deny(NO_ALLOW)],
  ['$(...) runs a command', 'ls $(reboot)', deny('uncertain')],
  ['$(...) with a denied command is reported as denied', 'ls /$(rm -rf /)', deny(DENY_RM)],
  ['backquotes run a command', 'ls `reboot`', deny('uncertain')],
  ['backquotes inside double quotes', 'ls "`rm -rf /`"', deny(DENY_RM)],
  ['<(...) process substitution', 'cat <(reboot)', deny('uncertain')],
  ['>(...) process substitution', 'ls >(reboot)', deny('uncertain')],
  ['process substitution as a redirect target', 'ls > >(reboot)', deny('uncertain')],
  ['redirection that writes, read-only', 'ls > /etc/passwd', deny('read_only'), readOnly],
  ['append redirection, read-only', 'uptime >> /tmp/log', deny('read_only'), readOnly],
  ['&> redirection, read-only', 'uptime &> /tmp/log', deny('uncertain'), readOnly],
  ['>| clobber, read-only', 'uptime >| /tmp/log', deny('read_only'), readOnly],
  ['<> read-write open, read-only', 'uptime <> /tmp/log', deny('read_only'), readOnly],
  ['>&file redirection, read-only', 'uptime >&/tmp/log', deny('read_only'), readOnly],
  ['fd-prefixed write, read-only', 'uptime 2>/tmp/err', deny('read_only'), readOnly],
  ['write inside a subshell, read-only', '(uptime > /tmp/x)', deny('read_only'), readOnly],
  ['write after a group, read-only', '{ uptime; } > /tmp/x', deny('read_only'), readOnly],
  ['here-doc body with a command substitution', 'cat /etc/hosts <<EOF\n$(reboot)\nEOF', deny('uncertain')],
  ['quoted here-doc fed to a shell', "sh <<'EOF'\nreboot\nEOF", deny('uncertain')],
  ['here-string with a substitution', 'uptime <<< $(reboot)', deny('uncertain')],
  ["empty quotes inside a name: r''m", "r''m -rf /", deny(DENY_RM)],
  ['double-quoted name: "rm"', '"rm" -rf /', deny(DENY_RM)],
  ['backslash before the name: \\rm', '\\rm -rf /', deny(DENY_RM)],
  ['backslash inside the name: r\\m', 'r\\m -rf /', deny(DENY_RM)],
  ['mixed quotes: \'r\'"m"', '\'r\'"m" -rf /', deny(DENY_RM)],
  ['line continuation inside the name', 'r\\\nm -rf /', deny(DENY_RM)],
  ['escaped space makes one word', 'ls\\ /', deny(NO_ALLOW)],
  ['env wrapper around rm', 'env X=1 rm -rf /', deny(DENY_RM)],
  ['env wrapper around an unlisted command', 'env ls', deny(NO_ALLOW)],
  ["sh -c 'rm'", "sh -c 'rm -rf /'", deny(DENY_RM)],
  ['bash -c wrapper', 'bash -c ls', deny(NO_ALLOW)],
  ['sudo wrapper', 'sudo ls', deny(NO_ALLOW)],
  ['xargs wrapper', 'ls | xargs reboot', deny(NO_ALLOW)],
  ['nice / timeout / nohup / busybox / command', 'nice uptime', deny(NO_ALLOW)],
  ['timeout wrapper', 'timeout 5 uptime', deny(NO_ALLOW)],
  ['busybox wrapper', 'busybox rm -rf /', deny(DENY_RM)],
  ['exec', 'exec uptime', deny(NO_ALLOW)],
  ['eval of a quoted rm', "eval 'rm -rf /'", deny(DENY_RM)],
  ['an alias definition', "alias ls='rm -rf /'; ls", deny(DENY_RM)],
  ['a function definition', 'ls() { reboot; }; ls', deny('uncertain')],
  ['fullwidth letters', 'ｒｍ -rf /', deny(NO_ALLOW)],
  ['Cyrillic look-alike in an allowed name', 'l\u0455 /', deny(NO_ALLOW)],
  ['no-break space instead of a space', 'ls\u00a0/tmp', deny(NO_ALLOW)],
  ['NUL byte', 'ls\u0000; rm -rf /', deny('input')],
  ['escape sequence', 'ls \u001b[2J', deny('input')],
  ['carriage return', 'ls\r', deny('input')],
  ['right-to-left override', 'ls /tmp\u202e', deny('input')],
  ['very long line', `ls /${'a'.repeat(MAX_COMMAND_BYTES)}`, deny('input')],
  ['${IFS} as a separator', 'cat${IFS}/etc/shadow', deny('uncertain')],
  ['$VAR in an argument', 'ls $HOME', deny('uncertain')],
  ['"$VAR" in double quotes', 'ls "$HOME"', deny('uncertain')],
  ["$'..' ANSI-C quoting", "$'\\x72\\x6d' -rf /", deny('uncertain')],
  ['arithmetic expansion', 'ls /$((1+1))', deny('uncertain')],
  ['brace expansion', 'ls /{etc,root}', deny('uncertain')],
  ['brace expansion building a command', '{reboot,now}', deny('uncertain')],
  ['glob in the command name', '/bin/r? -rf /', deny('uncertain')],
  ['glob as the whole command name', 'l* /', deny('uncertain')],
  ['glob at the start of an argument (may expand to an option)', 'ls *', deny('uncertain')],
  ['bracket glob at the start of an argument', 'ls [-]*', deny('uncertain')],
  ['glob as a redirection target', 'uptime > /tmp/*', deny('uncertain')],
  ['glob as an input redirection', 'cat /etc/hosts < /etc/shado?', deny('uncertain')],
  ['tilde expansion', 'ls ~root', deny('uncertain')],
  ['extglob', 'ls @(a|b)', deny('uncertain')],
  ['[[ test ]]', '[[ -f /x ]] && ls', deny('uncertain')],
  ['time keyword', 'time ls', deny('uncertain')],
  ['named fd redirection', 'ls {fd}>/tmp/x', deny('uncertain')],
  ['coproc', 'coproc reboot', deny('uncertain')],
  ['assignment prefix is part of the command', 'X=/tmp ls', deny(NO_ALLOW)],
  ['PATH prefix', 'PATH=/tmp ls', deny('uncertain')],
  ['LD_PRELOAD prefix', 'LD_PRELOAD=/tmp/x.so uptime', deny('uncertain')],
  ['for with an arithmetic variable runs a substitution', "for RANDOM in 'a[$(reboot)]'; do uptime; done", deny('uncertain')],
  ['for PATH swaps the program an allowed name runs', 'for PATH in /tmp/evil; do ls; done', deny('uncertain')],
  ['for LC_ALL changes how the next line is read', 'for LC_ALL in zh_CN.GBK; do uptime; done', deny('uncertain')],
  ['for with an ordinary name: each word is judged as an assignment', "for x in 'a[$(reboot)]'; do uptime; done", deny(NO_ALLOW)],
  ['multibyte character before a backslash (GBK reads them as one)', 'cat /etc/hostname <"\u4e01\\" ; touch /tmp/m ; echo \u4e01\\""', deny('uncertain')],
  ['&> is & and a new command to a POSIX sh', 'echo &>/dev/null reboot', deny('uncertain')],
  ['&>> likewise', 'echo hi &>>/dev/null reboot', deny('uncertain')],
  ['a two-digit fd is an argument to a POSIX sh', 'ls -l 10>/dev/null', deny('uncertain')],
  ['/dev/tcp opens a network connection', 'uptime </dev/tcp/127.0.0.1/9', deny('uncertain')],
  ['stdin read from a file no rule names', 'uptime < /etc/shadow', deny(NO_ALLOW)],
  ['.. climbs out of an allowed folder', 'ls /var/log/../../root', deny(NO_ALLOW)],
  ['subshell around an unlisted command', '(reboot)', deny(NO_ALLOW)],
  ['group around an unlisted command', '{ reboot; }', deny(NO_ALLOW)],
  ['if body', 'if uptime; then reboot; fi', deny(NO_ALLOW)],
  ['while body', 'while uptime; do reboot; done', deny(NO_ALLOW)],
  ['for body', 'for x in a; do reboot; done', deny(NO_ALLOW)],
  ['case body', 'case a in a) reboot;; esac', deny(NO_ALLOW)],
  ['path traversal out of an allowed folder', 'cat /etc/../root/.ssh/id_rsa', deny(NO_ALLOW)],
  ['a comment hides nothing: the next line still counts', 'ls # harmless\nreboot', deny(NO_ALLOW)],
  ['confirm then an unlisted command is refused, not asked', 'systemctl restart nginx; reboot', deny(NO_ALLOW)],
  ['confirm then a denied command', 'systemctl restart nginx && rm -f /x', deny(DENY_RM)],
  ['deny matches a redirection target too', 'ls > /tmp/rm', deny(DENY_RM)],
  ['syntax error: dangling pipe', 'ls |', deny('parse')],
  ['syntax error: unclosed quote', 'ls "/tmp', deny('parse')],
  ['syntax error: stray paren', 'ls )', deny('parse')],
  ['empty command', '   ', deny('input')],
  ['only a comment', '# rm -rf /', deny('parse')],
];

for (const [name, line, expected, p] of HOSTILE) {
  test(`refuses: ${name}`, async () => {
    await assertDecision(line, expected, p);
  });
}

test('the hostile table is big enough to mean something', () => {
  assert.ok(HOSTILE.length >= 40);
});

const ALLOWED: string[] = [
  'ls',
  'ls -la /var/log',
  'cat /etc/hostname',
  'uptime',
  'df -h',
  'systemctl status nginx.service',
  'uptime; df -h',
  'ls -l /tmp && cat /etc/hosts || uptime',
  'ls /tmp | cat /etc/os-release',
  "'ls' -l",
  'ls 2>/dev/null',
  'ls 2>&1',
  'ls # a comment with rm -rf / in it',
  'uptime #$(reboot)',
  'ls \\\n/tmp',
  'ls\t-l',
  'ls -l /tmp\n',
  '(uptime; df -h)',
  'if uptime; then df -h; else ls; fi',
];

for (const line of ALLOWED) {
  test(`allows: ${JSON.stringify(line)}`, async () => {
    await assertDecision(line, 'allow');
  });
}

test('read-only still allows output to /dev/null and fd duplication', async () => {
  await assertDecision('ls /tmp >/dev/null 2>&1', 'allow', readOnly);
  await assertDecision('uptime >/dev/null 2>&1 </dev/null', 'allow', readOnly);
});

test('under an allow list, a redirection that writes must itself be allowed', async () => {
  const got = await assertDecision('uptime > /tmp/uptime.txt', { decision: 'deny', rule: 'allow (no match)' });
  assert.ok(got.decision === 'deny' && got.reason.includes('>/tmp/uptime.txt'));
  await assertDecision('uptime > /dev/null', 'allow');
  await assertDecision('uptime 2>&1', 'allow');
});

test('a write allowed by pattern passes', async () => {
  assert.deepEqual(await evaluateCommand('uptime > /tmp/out.txt', { allow: ['^uptime$', '^>/tmp/out\\.txt$'] }), { decision: 'allow' });
});

test('a confirm pattern asks a human, naming the rule and the command', async () => {
  const got = await assertDecision('systemctl restart nginx', { decision: 'confirm', rule: CONFIRM_RESTART });
  assert.ok(got.decision === 'confirm' && got.reason.includes('systemctl restart nginx'));
  await assertDecision('uptime && systemctl restart sshd', { decision: 'confirm', rule: CONFIRM_RESTART });
});

test('no policy at all runs everything (the original behaviour)', async () => {
  assert.deepEqual(await evaluateCommand('rm -rf / $(reboot)', undefined), { decision: 'allow' });
  assert.deepEqual(await evaluateCommand('rm -rf /', null), { decision: 'allow' });
});

test('a deny-only policy allows what it does not deny, but still refuses what it cannot read', async () => {
  const denyOnly: Policy = { deny: DENY };
  await assertDecision('reboot', 'allow', denyOnly);
  await assertDecision('r""m -rf /', deny(DENY_RM), denyOnly);
  await assertDecision('reboot $X', deny('uncertain'), denyOnly);
});

test('an empty allow list allows nothing', async () => {
  await assertDecision('ls', deny(NO_ALLOW), { allow: [] });
});

test('a refusal tells the agent what is allowed instead', async () => {
  const got = await evaluateCommand('reboot', policy);
  assert.equal(got.decision, 'deny');
  assert.ok('reason' in got && got.reason.includes('^uptime$') && got.reason.includes('reboot'), JSON.stringify(got));
});

test('uncertain refusals explain what to write instead', async () => {
  const got = await evaluateCommand('ls $HOME', policy);
  assert.ok('reason' in got && got.reason.includes('$HOME') && got.reason.includes('literally'), JSON.stringify(got));
});

test('compilePolicy names the bad pattern; evaluateCommand refuses instead of throwing', async () => {
  assert.throws(() => compilePolicy({ allow: ['^ls$', '(unclosed'] }), /allow\[1\] "\(unclosed" is not a valid regular expression/);
  const got = await evaluateCommand('ls', { deny: ['[z-a]'] });
  assert.equal(got.decision, 'deny');
  assert.ok('rule' in got && got.rule === 'policy');
});

test('a compiled policy is accepted as is', async () => {
  const compiled = compilePolicy(policy);
  await assertDecision('ls -l /tmp', 'allow', compiled as unknown as Policy);
  assert.deepEqual(await evaluateCommand('rm x', compiled), { decision: 'deny', rule: DENY_RM, reason: (await evaluateCommand('rm x', policy) as { reason: string }).reason });
});

test('policyWarnings flags allow and confirm patterns that are not anchored', () => {
  const warnings = policyWarnings({ allow: ['^ls$', 'uptime', '^df -h', '^a$|^b$'], confirm: ['reboot$'] });
  assert.equal(warnings.length, 4, warnings.join('\n'));
  assert.ok(warnings[0]!.startsWith('allow[1] "uptime"'));
  assert.ok(warnings[1]!.startsWith('allow[2]'));
  assert.ok(warnings[2]!.startsWith('allow[3]') && warnings[2]!.includes('top-level'));
  assert.ok(warnings[3]!.startsWith('confirm[0]'));
  assert.deepEqual(policyWarnings({ allow: ['^(?:ls|df -h)$', '^echo \\$$'] }), []);
  assert.deepEqual(policyWarnings({ allow: ['^echo \\$'] }).length, 1);
  assert.equal(policyWarnings({ allow: [] }).length, 1);
});

// --- the shell reader itself --------------------------------------------------------------------

test('parseCommandLine lists every simple command with its argv, in every nesting', async () => {
  const parsed = await parseCommandLine(
    "a 'b c' \"d\"\\e; (f) && { g; } | h\nif i; then j; elif k; then l; else m; fi\nwhile n; do o; done; for x in p; do q; done; case r in s) t;; esac",
  );
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.commands.map((c) => c.argv.join('|')), [
    'a|b c|de', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', '', 'q', 't',
  ]);
  assert.equal(parsed.commands[0]!.text, "a 'b c' de");
  assert.equal(parsed.commands[11]!.text, 'x=p', "a for loop's words are judged as the assignments they are");
});

test('a glob inside or after a path, or quoted, is not refused; one at the start of an argument says what to write', async () => {
  for (const line of ['ls ./* /var/log/*.log', "ls '*'", 'ls \\*', 'find /var -name "*.log"']) {
    assert.equal((await parseCommandLine(line)).ok, true, line);
  }
  const leading = await parseCommandLine('grep -r needle *');
  assert.ok(!leading.ok && leading.reason.includes('write `./*` instead'), JSON.stringify(leading));
});

test('parseCommandLine reports redirections and whether they write', async () => {
  const parsed = await parseCommandLine('a >x 2>&1 <y >>z 3<&0 </dev/null <<<w >&- 2>|v 4<>u');
  assert.ok(parsed.ok);
  assert.deepEqual(
    parsed.redirections.map((r) => `${r.fd ?? ''}${r.op}${r.target}:${r.writes ? 'w' : '-'}${r.reads ? 'r' : '-'}`),
    ['>x:w-', '2>&1:--', '<y:-r', '>>z:w-', '3<&0:--', '</dev/null:--', '<<<w:--', '>&-:--', '2>|v:w-', '4<>u:wr'],
  );
});

test('parseCommandLine keeps assignments in the canonical text', async () => {
  const parsed = await parseCommandLine('TZ=UTC FOO="a b" ls -l');
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.commands[0], {
    text: "TZ=UTC FOO='a b' ls -l",
    argv: ['ls', '-l'],
    words: [{ value: 'ls', glob: false, expanded: false }, { value: '-l', glob: false, expanded: false }],
    assignments: ['TZ=UTC', 'FOO=a b'],
  });
});

test('parseCommandLine resolves here-documents without reading their body as commands', async () => {
  const parsed = await parseCommandLine("cat <<'EOF' >/tmp/out\nrm -rf /\nEOF\nls");
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.commands.map((c) => c.text), ['cat', 'ls']);
  assert.deepEqual(parsed.redirections.map((r) => r.op), ['<<', '>']);
});

test('parseCommandLine calls syntax errors syntax errors, with a position', async () => {
  const parsed = await parseCommandLine('ls && && ls');
  assert.ok(!parsed.ok && parsed.kind === 'syntax');
  assert.match(parsed.reason, /column/);
});
