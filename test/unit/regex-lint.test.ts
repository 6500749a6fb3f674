// The check that tells an operator a regex rule lets the agent pass options where a value was meant.
// Its "safe" verdicts are checked against the regex engine itself with option-shaped words.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { optionArgumentProblem } from '../../src/policy/regex-lint.js';
import { policyWarnings } from '../../src/policy/index.js';

const TABLE: [string, 'warns' | 'safe'][] = [
  ['^systemctl status [\\w@.-]+$', 'warns'],
  ['^systemctl status [\\w@.][\\w@.-]*$', 'safe'],
  ['^journalctl -u \\S+$', 'warns'],
  ['^cat /var/log/.*$', 'warns'],
  ['^ls( -[a-z]+)* (.*)$', 'warns'],
  ['^ls -l /var/log$', 'safe'],
  ['^uptime$', 'safe'],
  ['^df -h$', 'safe'],
  ['^tail -n \\d+ /var/log/[\\w.]+$', 'safe'],
  ['^echo [\\w .,-]*$', 'warns'],
  ['^echo(?: [\\w.,!][\\w.,!-]*)*$', 'safe'],
  ['^ls( -[a-zA-Z]+)*( /[\\w./-]*)?$', 'safe'],
  ['^cat /etc/[\\w.-]+$', 'safe'],
  ['^a [+--]$', 'warns'],
  ['^a \\x2d$', 'safe'],
  ['^a \\-x$', 'safe'],
  ['^a [^x]$', 'warns'],
  ['^a\\s\\S$', 'warns'],
  ['^a(?: |x)[-a]$', 'warns'],
  ['^(?:ls|df -h)$', 'safe'],
  ['^x( [a-z-]+)+$', 'warns'],
  ['^x [a-z]{2,}$', 'safe'],
  ['^x [\\W]$', 'warns'],
  ['^x [\\D]+$', 'warns'],
  ['^x [\\u002d]$', 'warns'],
  ['^x (?:[0-9]+|[a-z]+)$', 'safe'],
  ['^x (?:[0-9]+|.+)$', 'warns'],
  ['^x ?[-a]$', 'warns'],
  ['^x(?= )[ ][-a]$', 'warns'],
  ['^x [\\w]+(?:,[\\w]+)*$', 'safe'],
  ['^grep -F \'[^\']*\' /var/log/[a-z]+\\.log$', 'warns'],
  ['^find /var/log -name [\\w.*]+$', 'safe'],
  ['^x [a-z]+[ ]?[-a-z]*$', 'warns'],
  ['^x[ \\t]+[a-z]+$', 'safe'],
  ['^x\\s+\\w+$', 'safe'],
  ['^x \\w*-\\w*$', 'warns'],
  ['^x \\w+-\\w*$', 'safe'],
  ['^x [a-z](?:-[a-z]+)*$', 'safe'],
  ['^x [.-]$', 'warns'],
  ['^x \\S{1,3}$', 'warns'],
  ['(a)\\1', 'warns'],
];

test('the lint flags option slots and leaves values alone', () => {
  for (const [source, expected] of TABLE) {
    const problem = optionArgumentProblem(source);
    assert.equal(problem === undefined ? 'safe' : 'warns', expected, `${source}: ${problem}`);
  }
  assert.ok(TABLE.length >= 40);
});

test('what the lint calls safe admits no option-shaped word after a space (asked of the regex engine)', () => {
  for (const [source, expected] of TABLE) {
    if (expected !== 'safe') continue;
    const regex = new RegExp(source);
    // A pattern that writes options itself (` -l`, `( -[a-z]+)*`) still must not admit these.
    const writesOptions = source.includes(' -') || source.includes('\\-') || source.includes('\\x2d');
    const hostile = writesOptions ? ['--output=/x', '-Hroot@h'] : ['-x', '--output=/x', '-Hroot@h', '-', '-n'];
    const fillers = ['', 'a', 'nginx', '/var/log/x', '1', 'a.b'];
    // Texts from the pattern's own literal prefix, with an option-shaped word in every word position.
    const prefix = source.replace(/^\^/, '').split(/[\\[(.*+?{$|]/)[0]!.trim();
    for (const option of hostile) {
      for (const filler of fillers) {
        for (const text of [`${prefix} ${option}`, `${prefix} ${filler} ${option}`, `${prefix} ${option} ${filler}`, `${prefix}${filler} ${option}`]) {
          assert.ok(!regex.test(text), `${source} called safe but admits ${JSON.stringify(text)}`);
        }
      }
    }
  }
});

test('never throws, whatever the input', () => {
  for (const source of ['(', ')', '[', '\\', '(?<', 'a{2,1}', '[\\]', '(?<n>a)\\k<n>', '\\u{41}', '.'.repeat(5000), '(?:a|'.repeat(50)]) {
    assert.doesNotThrow(() => optionArgumentProblem(source), source);
  }
});

test('check and serve get it through policyWarnings, for allow and confirm rules only', () => {
  const warnings = policyWarnings({ allow: ['^systemctl status [\\w@.-]+$'], confirm: ['^restart \\S+$'], deny: ['^x .*$'] });
  assert.equal(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /^allow\[0\].*start with "-"/);
  assert.match(warnings[1]!, /^confirm\[0\]/);
});
