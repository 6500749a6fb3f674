// Programs that run text as shell commands: `sh -c '...'`, `eval '...'`, `su -c '...'`, also behind wrappers
// (`sudo`, `env`, `nice`, `find ... -exec` ...). The policy reads that text as a command line of its own (shell.ts),
// so `sh -c "t''ouch x"` is judged as `touch x`. A shell whose commands come from a file or stdin, and `.`/`source`,
// run something the policy can't see: uncertain.
//
// Over-approximation is the safe side here: reading a word as a script that the device would not run only adds
// commands to judge, so it can refuse more, never allow more.

export type NestedScript = { script: string; via: string } | { uncertain: string };

const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'hush', 'ksh', 'ksh93', 'mksh', 'pdksh', 'oksh', 'zsh', 'yash', 'posh', 'rbash', 'lksh']);
/** Programs that run their remaining words as a command (directly or through a shell). */
const WRAPPERS = new Set([
  'env', 'exec', 'command', 'builtin', 'nohup', 'nice', 'ionice', 'chrt', 'taskset', 'timeout', 'stdbuf', 'setsid',
  'sudo', 'doas', 'chroot', 'flock', 'time', 'xargs', 'busybox', 'nsenter', 'unshare', 'systemd-run', 'unbuffer',
  'setpriv', 'runcon', 'sg', 'strace', 'ltrace', 'catchsegv', 'fakeroot', 'proot', 'firejail', 'torsocks', 'parallel',
]);
/** find's actions that run a command: the words after them, up to `;` or `+`, are that command. */
const FIND_EXEC = new Set(['-exec', '-execdir', '-ok', '-okdir']);
/** Shell options that take the next word as their value. */
const SHELL_OPTIONS_WITH_VALUE = new Set(['--rcfile', '--init-file']);
const SHELL_LONG_OPTIONS = new Set(['--norc', '--noprofile', '--posix', '--login', '--restricted', '--noediting', '--verbose']);

/** The scripts `argv` hands to a shell, or why they can't be known; empty when it runs none. */
export function nestedScriptsOf(argv: readonly string[]): NestedScript[] {
  const first = programName(argv[0]);
  if (first === 'find') return findExec(argv);
  if (!WRAPPERS.has(first)) {
    const found = runsText(argv, 0);
    return found === undefined ? [] : [found];
  }
  // Behind a wrapper any later word may be the program it runs (its options and values are not parsed here).
  for (let i = 1; i < argv.length; i += 1) {
    if (programName(argv[i]) === 'find') return findExec(argv.slice(i));
    const found = runsText(argv, i);
    if (found === undefined) continue;
    const feeder = argv.slice(0, i).map(programName).find((name) => name === 'xargs' || name === 'parallel');
    if (feeder && 'script' in found) {
      return [{ uncertain: `\`${feeder}\` adds words read from stdin to \`${found.via}\`, so the policy can't know the script it runs` }];
    }
    return [found];
  }
  return [];
}

function programName(word: string | undefined): string {
  return (word ?? '').split('/').pop() ?? '';
}

/** What the program at argv[i] runs as text, if it is one that does. */
function runsText(argv: readonly string[], i: number): NestedScript | undefined {
  const name = programName(argv[i]);
  if (SHELLS.has(name)) return shellScript(argv, i);
  if (name === 'eval') return { script: argv.slice(i + 1).join(' '), via: 'eval' };
  if (name === '.' || name === 'source') {
    return { uncertain: `\`${name}\` runs the file ${argv[i + 1] ?? ''} as a script, whose commands the policy can't see; run the commands themselves` };
  }
  if (name === 'su' || name === 'runuser') return commandOption(argv, i, name);
  if (name === 'watch') return { uncertain: '`watch` runs its command through a shell, again and again; run the command once instead' };
  return undefined;
}

/** `sh [options] -c SCRIPT [name args...]`; any other shell invocation reads commands the policy can't see. */
function shellScript(argv: readonly string[], at: number): NestedScript {
  const shell = argv[at]!;
  let takesScript = false;
  let i = at + 1;
  for (; i < argv.length; i += 1) {
    const word = argv[i]!;
    if (word === '--' || word === '-') {
      i += 1;
      break;
    }
    if (/^[-+][A-Za-z]+$/.test(word)) {
      if (word.startsWith('-') && word.includes('c')) takesScript = true;
      if (/[oO]$/.test(word)) i += 1; // -o errexit, -O extglob
      continue;
    }
    if (SHELL_OPTIONS_WITH_VALUE.has(word)) {
      i += 1;
      continue;
    }
    if (SHELL_LONG_OPTIONS.has(word)) continue;
    if (word.startsWith('-')) return { uncertain: `\`${shell} ${word}\` is a shell option the policy does not know; run the commands directly` };
    break;
  }
  const script = argv[i];
  if (takesScript && script !== undefined) return { script, via: `${shell} -c` };
  return {
    uncertain:
      `\`${shell}\` here reads its commands from ${script === undefined ? 'stdin' : `the file ${script}`}, which the policy can't see; ` +
      `run the commands directly, or pass them with \`${shell} -c '...'\` where they can be checked`,
  };
}

/** `su [user] -c COMMAND`, `runuser -u user -- cmd`: the command option's value is a script; without it, a shell. */
function commandOption(argv: readonly string[], at: number, name: string): NestedScript {
  for (let i = at + 1; i < argv.length; i += 1) {
    const word = argv[i]!;
    if (word === '-c' || word === '--command') return argv[i + 1] === undefined ? { uncertain: `\`${name} -c\` has no command` } : { script: argv[i + 1]!, via: `${name} -c` };
    if (word.startsWith('--command=')) return { script: word.slice('--command='.length), via: `${name} --command` };
    if (name === 'runuser' && word === '--') return { script: argv.slice(i + 1).join(' '), via: 'runuser' };
  }
  return { uncertain: `\`${name}\` without -c starts a shell that reads commands the policy can't see; pass the command with -c '...'` };
}

/** The scripts of every `-exec CMD ... ;` of a find; `{}` in one is a file name, which only the device knows. */
function findExec(argv: readonly string[]): NestedScript[] {
  const found: NestedScript[] = [];
  for (let i = 1; i < argv.length; i += 1) {
    if (!FIND_EXEC.has(argv[i]!)) continue;
    let end = i + 1;
    while (end < argv.length && argv[end] !== ';' && argv[end] !== '+') end += 1;
    for (const nested of nestedScriptsOf(argv.slice(i + 1, end))) {
      const named = 'script' in nested && nested.script.includes('{}');
      found.push(named ? { uncertain: `find puts file names into the script of \`${nested.via}\` ({}), so the policy can't know what it runs` } : nested);
    }
    i = end;
  }
  return found;
}
