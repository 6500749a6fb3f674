// Actions' promises: parameters are checked against their declared types, and whatever a hostile
// value contains, it reaches the shell as exactly one literal word.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actionSchema,
  renderAction,
  resolvedPathProblem,
  validateActionTemplate,
  describeActions,
  parseCommandLine,
  shellQuote,
  type ActionConfig,
} from '../../src/policy/index.js';

const showLog: ActionConfig = {
  description: 'Show the end of a log file, filtered',
  command: 'tail -n {{lines}} {{file}} | grep -e {{needle}}',
  params: {
    lines: { type: 'integer', min: 1, max: 1000, default: 100 },
    file: { type: 'path', roots: ['/var/log', '/tmp/app'] },
    needle: { type: 'string', max_length: 200, description: 'text to look for' },
  },
};

const restart: ActionConfig = {
  description: 'Restart a service',
  command: 'sudo -n systemctl restart {{unit}}',
  params: { unit: { type: 'enum', values: ['nginx', 'sshd'] } },
  confirm: true,
  timeout_s: 30,
};

const echo: ActionConfig = {
  description: 'Echo a message',
  command: 'printf %s {{msg}}',
  params: { msg: { type: 'string', pattern: '[\\s\\S]*', max_length: 4000 } },
};

function rendered(action: ActionConfig, params: unknown): string {
  const result = renderAction('test', action, params);
  assert.ok(result.ok, `expected success, got ${JSON.stringify(result)}`);
  return result.command;
}

function renderError(action: ActionConfig, params: unknown): string {
  const result = renderAction('test', action, params);
  assert.ok(!result.ok, `expected an error, got ${JSON.stringify(result)}`);
  return result.error;
}

test('a rendered action lists its path parameters for the check on the device', () => {
  const result = renderAction('test', showLog, { file: '/tmp/app/x.log', needle: 'e' });
  assert.ok(result.ok);
  assert.deepEqual(result.paths, [{ param: 'file', value: '/tmp/app/x.log', roots: ['/var/log', '/tmp/app'] }]);
  const none = renderAction('test', restart, { unit: 'nginx' });
  assert.ok(none.ok);
  assert.deepEqual(none.paths, []);
});

test('a path parameter must stay under a root once the device has followed its symlinks', () => {
  const path = { param: 'file', value: '/var/log/app.log', roots: ['/var/log'] };
  assert.equal(resolvedPathProblem(path, '/var/log/app/2026.log', ['/var/log']), undefined);
  assert.equal(resolvedPathProblem(path, '/run/log/app.log', ['/run/log']), undefined, 'the root is a link too');
  assert.equal(
    resolvedPathProblem(path, '/etc/shadow', ['/var/log']),
    'parameter "file" is /var/log/app.log, which the device resolves (symlinks followed) to /etc/shadow, outside /var/log',
  );
  assert.ok(resolvedPathProblem(path, '/var/logger/x', ['/var/log']), 'a sibling with the root as a prefix is outside');
});

test('good params render with every value single-quoted, defaults filled in', () => {
  assert.equal(
    rendered(showLog, { file: '/var/log/syslog', needle: 'error' }),
    "tail -n '100' '/var/log/syslog' | grep -e 'error'",
  );
  assert.equal(rendered(showLog, { lines: '20', file: '/tmp/app/a.log', needle: 'x' }), "tail -n '20' '/tmp/app/a.log' | grep -e 'x'");
  assert.equal(rendered(restart, { unit: 'nginx' }), "sudo -n systemctl restart 'nginx'");
});

const HOSTILE_VALUES = [
  '; rm -rf / #',
  '$(touch /tmp/x)',
  '`touch /tmp/x`',
  "'; touch /tmp/x; '",
  "it's",
  "''''",
  'a\nrm -rf /',
  '"$HOME" ${IFS} $((1+1))',
  '\\',
  '\\\'',
  '*',
  '~root',
  '{a,b}',
  '<(id) >(id) > /etc/passwd',
  '&& || | & ;; ( ) { }',
  '# not a comment',
  '\t tab',
  'ｒｍ ѕ',
  '',
];

for (const value of HOSTILE_VALUES) {
  test(`a hostile value is one literal word: ${JSON.stringify(value)}`, async () => {
    const command = rendered(echo, { msg: value });
    assert.equal(command, `printf %s ${shellQuote(value)}`);
    const parsed = await parseCommandLine(command);
    assert.ok(parsed.ok, `${command}: ${JSON.stringify(parsed)}`);
    assert.equal(parsed.commands.length, 1);
    assert.deepEqual(parsed.commands[0]!.argv, ['printf', '%s', value]);
    assert.deepEqual(parsed.redirections, []);
  });
}

test('the quoting of a value containing a single quote is exact', () => {
  assert.equal(rendered(echo, { msg: "a'b" }), "printf %s 'a'\\''b'");
});

test('unknown, missing and mistyped params are named with what is allowed', () => {
  let error = renderError(showLog, { file: '/var/log/x', needle: 'a', colour: 'red' });
  assert.match(error, /unknown parameter "colour"/);
  assert.match(error, /takes lines \(default 100\): integer from 1 to 1000/);

  error = renderError(showLog, { needle: 'a' });
  assert.match(error, /missing parameter "file" \(absolute path under \/var\/log or \/tmp\/app\)/);

  assert.match(renderError(showLog, { file: '/var/log/x', needle: 'a', lines: 5000 }), /"lines" must be from 1 to 1000, not 5000/);
  assert.match(renderError(showLog, { file: '/var/log/x', needle: 'a', lines: 1.5 }), /"lines" must be an integer/);
  assert.match(renderError(showLog, { file: '/var/log/x', needle: 'a', lines: '1; reboot' }), /"lines" must be an integer/);
  assert.match(renderError(showLog, { file: '/var/log/x', needle: { $ne: 1 } }), /"needle" must be a string/);
  assert.match(renderError(restart, { unit: 'cron' }), /"unit" must be one of "nginx", "sshd"/);
  assert.match(renderError(restart, 'nginx'), /params must be an object/);
});

test('string params: pattern must match the whole value; leading "-" needs a pattern that allows it', () => {
  const unit: ActionConfig = {
    description: 'status',
    command: 'systemctl status {{unit}}',
    params: { unit: { type: 'string', pattern: '[\\w@.-]+', max_length: 64 } },
  };
  assert.equal(rendered(unit, { unit: 'nginx.service' }), "systemctl status 'nginx.service'");
  assert.match(renderError(unit, { unit: 'nginx; reboot' }), /"unit" must match \[\\w@.-\]\+/);
  assert.match(renderError(unit, { unit: 'a'.repeat(65) }), /longer than 64 characters/);
  assert.equal(rendered(unit, { unit: '--help' }), "systemctl status '--help'");
  assert.match(renderError(showLog, { file: '/var/log/x', needle: '--include=/etc/shadow' }), /may not start with "-"/);
  assert.match(renderError(showLog, { file: '/var/log/x', needle: 'a\u0000b' }), /control characters/);
});

test('path params must be absolute, normalized and under a root', () => {
  const base = { needle: 'a' };
  assert.match(renderError(showLog, { ...base, file: 'var/log/x' }), /absolute path/);
  assert.match(renderError(showLog, { ...base, file: '/var/log/../../etc/shadow' }), /normalized/);
  assert.match(renderError(showLog, { ...base, file: '/var/log/./x' }), /normalized/);
  assert.match(renderError(showLog, { ...base, file: '/var/log//x' }), /normalized/);
  assert.match(renderError(showLog, { ...base, file: '/var/log/' }), /must not end with "\/"/);
  assert.match(renderError(showLog, { ...base, file: '/var/logs/x' }), /must be under \/var\/log or \/tmp\/app/);
  assert.match(renderError(showLog, { ...base, file: '/etc/shadow' }), /must be under/);
  assert.match(renderError(showLog, { ...base, file: '/var/log/a\u0000b' }), /control characters/);
  assert.equal(rendered(showLog, { ...base, file: '/var/log' }), "tail -n '100' '/var/log' | grep -e 'a'");
});

test('templates: placeholders must be declared and used', () => {
  assert.deepEqual(validateActionTemplate(showLog), []);
  const errors = validateActionTemplate({
    description: 'd',
    command: 'echo {{a}} {{b}} {{ 1x }}',
    params: { a: { type: 'string' }, c: { type: 'string' } },
  });
  assert.ok(errors.some((e) => e.includes('{{b}} is used in command but not declared')), errors.join('\n'));
  assert.ok(errors.some((e) => e.includes('param "c" is declared but command never uses {{c}}')), errors.join('\n'));
  assert.ok(errors.some((e) => e.includes('{{ 1x }} is not a valid placeholder')), errors.join('\n'));
});

const UNSAFE_TEMPLATES: [string, RegExp][] = [
  ['echo "{{x}}"', /inside double quotes/],
  ["echo '{{x}}'", /inside single quotes/],
  ['echo \\{{x}}', /after a backslash/],
  ['echo `{{x}}`', /inside backquotes/],
  ["echo $'{{x}}'", /inside \$'...' quoting/],
  ['echo ${v:-{{x}}}', /inside a \$\{...\} expansion/],
  ['echo $(( {{x}} + 1 ))', /inside arithmetic/],
  ['(( {{x}} > 1 ))', /inside arithmetic/],
  ['[[ 1 -eq {{x}} ]]', /inside \[\[/],
  ['echo hi # {{x}}', /in a comment/],
  ['cat <<EOF\n{{x}}\nEOF', /here-document/],
  ['cat <<EOF # note\n{{x}}\nEOF', /here-document/],
  ['"$(case a in a) echo " {{x}} ";; esac)"', /inside double quotes/],
  ['echo "$(echo ")") {{x}}"', /inside double quotes/],
  ['echo "open {{x}}', /unclosed double-quote/],
];

for (const [command, problem] of UNSAFE_TEMPLATES) {
  test(`templates: a placeholder that quoting could not protect is a config error: ${JSON.stringify(command)}`, () => {
    const action: ActionConfig = { description: 'd', command, params: { x: { type: 'string' } } };
    const errors = validateActionTemplate(action);
    assert.ok(errors.some((e) => problem.test(e)), `${command}: ${errors.join('\n')}`);
    const result = renderAction('bad', action, { x: 'a' });
    assert.ok(!result.ok && result.error.includes('misconfigured'), 'a bad template never renders');
  });
}

const SAFE_TEMPLATES = [
  'echo $(cat {{x}})',
  'echo "$(cat {{x}})"',
  'x={{x}} printenv x',
  '( cd /tmp && ls -- {{x}} )',
  'case {{x}} in a) echo {{x}};; esac',
  'echo \\\\{{x}}',
  "echo 'a'{{x}}'b'",
  'echo "$HOME" {{x}}',
];

for (const command of SAFE_TEMPLATES) {
  test(`templates: a placeholder outside quotes is fine: ${JSON.stringify(command)}`, () => {
    assert.deepEqual(validateActionTemplate({ description: 'd', command, params: { x: { type: 'string' } } }), []);
  });
}

test('templates: a bad default or range is a config error', () => {
  const errors = validateActionTemplate({
    description: 'd',
    command: 'x {{n}} {{p}} {{e}}',
    params: {
      n: { type: 'integer', min: 5, max: 1 },
      p: { type: 'path', roots: ['/var/log'], default: '/etc/passwd' },
      e: { type: 'enum', values: ['a'], default: 'b' },
    },
  });
  assert.equal(errors.length, 3, errors.join('\n'));
});

test('actionSchema rejects unknown fields and bad specs, with paths', () => {
  const result = actionSchema.safeParse({
    description: 'd',
    command: 'echo {{x}} {{r}}',
    params: {
      x: { type: 'string', pattern: '(', colour: 'red' },
      r: { type: 'path', roots: ['/var/../etc'] },
    },
    retries: 3,
  });
  assert.ok(!result.success);
  const issues = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  assert.ok(issues.some((i) => i.startsWith(': ') && i.includes('retries')), issues.join('\n'));
  assert.ok(issues.some((i) => i.startsWith('params.x') && i.includes('colour')), issues.join('\n'));
  assert.ok(issues.some((i) => i.startsWith('params.x.pattern')), issues.join('\n'));
  assert.ok(issues.some((i) => i.startsWith('params.r.roots.0')), issues.join('\n'));
  assert.ok(actionSchema.safeParse(showLog).success);
  assert.ok(!actionSchema.safeParse({ description: 'd', command: 'echo "{{x}}"', params: { x: { type: 'string' } } }).success);
});

test('describeActions lists each action with its params and constraints', () => {
  const text = describeActions({ show_log: showLog, restart });
  assert.equal(
    text,
    [
      '- show_log: Show the end of a log file, filtered',
      '    lines (default 100): integer from 1 to 1000',
      '    file (required): absolute path under /var/log or /tmp/app',
      '    needle (required): string not starting with "-", at most 200 characters — text to look for',
      '- restart: Restart a service (asks a human first, timeout 30s)',
      '    unit (required): one of "nginx", "sshd"',
    ].join('\n'),
  );
  assert.equal(describeActions({}), '(no actions)');
});
