// The file tools' policy promises: a path is judged in its normalized form (so `..` can't climb out of an
// allowed folder), deny wins, an allow list must match `<tool> <path>`, read_only refuses every write, and a
// path that can't be judged is refused even without a policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateFileAccess, normalizeRemotePath, fileAccessSubject, type Policy } from '../../src/policy/index.js';

const policy: Policy = {
  allow: ['^read_file /var/log/', '^list_directory /var/log(/|$)', '^write_file /tmp/mcpgw-[\\w.-]+$'],
  deny: ['^(read_file|write_file) /etc/shadow$', '\\.ssh/'],
  confirm: ['^write_file /etc/app/[\\w.-]+$'],
};

test('no policy allows every well-formed path, as for commands', () => {
  assert.deepEqual(evaluateFileAccess('write', '/etc/passwd', undefined), { decision: 'allow' });
  assert.deepEqual(evaluateFileAccess('read', '/', null), { decision: 'allow' });
});

test('a path that cannot be judged is refused even without a policy', () => {
  for (const bad of ['relative/path', '~/x', '', 'var/log/syslog', '/var/log/\u0000/etc/shadow', '/var/log/a\nb', '/tmp/\u202eexe.txt']) {
    const decision = evaluateFileAccess('read', bad, undefined);
    assert.equal(decision.decision, 'deny', JSON.stringify(bad));
    assert.equal(decision.decision === 'deny' && decision.rule, 'input');
  }
});

test('an allow rule matches the tool and the path', () => {
  assert.deepEqual(evaluateFileAccess('read', '/var/log/syslog', policy), { decision: 'allow' });
  assert.deepEqual(evaluateFileAccess('list', '/var/log', policy), { decision: 'allow' });
  assert.deepEqual(evaluateFileAccess('write', '/tmp/mcpgw-x.conf', policy), { decision: 'allow' });
});

test('with an allow list, a path no rule matches is refused and the refusal lists the paths that are allowed', () => {
  const decision = evaluateFileAccess('read', '/etc/hostname', policy);
  assert.equal(decision.decision, 'deny');
  assert.equal(decision.decision === 'deny' && decision.rule, 'allow (no match)');
  assert.match(decision.decision === 'deny' ? decision.reason : '', /\^read_file \/var\/log\//);
  // read permission is not write permission
  assert.equal(evaluateFileAccess('write', '/var/log/syslog', policy).decision, 'deny');
  const noRule = evaluateFileAccess('write', '/opt/x', { allow: ['^uptime$'] });
  assert.match(noRule.decision === 'deny' ? noRule.reason : '', /No allow rule mentions write_file/);
});

test('".." is collapsed before matching: /var/log/../../etc/shadow is judged as /etc/shadow', () => {
  for (const sneaky of ['/var/log/../../etc/shadow', '/var/log/../../../../etc/shadow', '/var/log/./../../etc//shadow']) {
    const decision = evaluateFileAccess('read', sneaky, policy);
    assert.equal(decision.decision, 'deny', sneaky);
    assert.match(decision.decision === 'deny' ? decision.rule : '', /^deny\[0\]/, sneaky);
  }
  // climbing out of the allowed folder into one no rule allows
  assert.equal(evaluateFileAccess('read', '/var/log/../hostname', policy).decision, 'deny');
  assert.equal(evaluateFileAccess('write', '/tmp/mcpgw-a/../../etc/cron.d/x', policy).decision, 'deny');
  // and staying inside stays allowed
  assert.deepEqual(evaluateFileAccess('read', '/var/log/nginx/../syslog', policy), { decision: 'allow' });
});

test('deny wins over allow', () => {
  const p: Policy = { allow: ['^read_file /'], deny: ['\\.ssh/'] };
  assert.equal(evaluateFileAccess('read', '/root/.ssh/id_ed25519', p).decision, 'deny');
  assert.deepEqual(evaluateFileAccess('read', '/root/notes', p), { decision: 'allow' });
});

test('a confirm rule asks a human, and counts as allowed under an allow list', () => {
  const decision = evaluateFileAccess('write', '/etc/app/config.yaml', policy);
  assert.equal(decision.decision, 'confirm');
  assert.match(decision.decision === 'confirm' ? decision.rule : '', /^confirm\[0\]/);
});

test('read_only refuses every write, and names read_only, but reads and listings go on', () => {
  const readOnly: Policy = { read_only: true };
  const decision = evaluateFileAccess('write', '/tmp/x', readOnly);
  assert.equal(decision.decision, 'deny');
  assert.equal(decision.decision === 'deny' && decision.rule, 'read_only');
  assert.match(decision.decision === 'deny' ? decision.reason : '', /read_only/);
  assert.deepEqual(evaluateFileAccess('read', '/tmp/x', readOnly), { decision: 'allow' });
  assert.deepEqual(evaluateFileAccess('list', '/tmp', readOnly), { decision: 'allow' });
  // even a write an allow rule would allow
  assert.equal(evaluateFileAccess('write', '/tmp/mcpgw-x', { ...policy, read_only: true }).decision, 'deny');
});

test('a broken pattern refuses everything instead of throwing', () => {
  const decision = evaluateFileAccess('read', '/var/log/syslog', { allow: ['('] });
  assert.equal(decision.decision, 'deny');
  assert.equal(decision.decision === 'deny' && decision.rule, 'policy');
});

test('normalization: absolute, no trailing slash, duplicate slashes and dots collapsed', () => {
  const cases: [string, string][] = [
    ['/var/log/', '/var/log'],
    ['//etc//passwd', '/etc/passwd'],
    ['/a/./b/../c', '/a/c'],
    ['/..', '/'],
    ['/', '/'],
    ['/../../etc/shadow', '/etc/shadow'],
  ];
  for (const [input, expected] of cases) assert.deepEqual(normalizeRemotePath(input), { ok: true, path: expected }, input);
  assert.equal(normalizeRemotePath('/' + 'a'.repeat(5000)).ok, false);
  assert.equal(fileAccessSubject('list', '/var/log'), 'list_directory /var/log');
  assert.equal(fileAccessSubject('write', '/tmp/x'), 'write_file /tmp/x');
});

test('a path crafted to look like a second subject is still one literal path', () => {
  // `^read_file /var/log/` must not be satisfied by something that merely contains it further along
  assert.equal(evaluateFileAccess('read', '/etc/x read_file /var/log/y', policy).decision, 'deny');
});
