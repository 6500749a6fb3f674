// `demo` is the newcomer's first run and the widest end-to-end test there is: real sshd devices, a real
// `ssh -N -R` tunnel, the real MCP client against the built CLI. These tests hold it to its promises: it
// passes, it shows the refusal and the verified audit log, and it leaves no process or file behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { descendantsOf } from '../helpers/sshd.js';
import { CLI } from '../helpers/gateway.js';

const run = promisify(execFile);

async function processTable(): Promise<Map<number, string>> {
  const { stdout } = await run('ps', ['-eo', 'pid=,args=']);
  const table = new Map<number, string>();
  for (const line of stdout.split('\n')) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (match) table.set(Number(match[1]), match[2]!);
  }
  return table;
}

interface DemoRun {
  child: ChildProcess;
  output(): string;
  /** Every process seen below the demo while it ran: pid → command line. */
  seen: Map<number, string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** Starts the built CLI's demo and watches the process tree below it until it exits. */
function startDemo(args: string[], env: NodeJS.ProcessEnv = process.env): DemoRun {
  const child = spawn(process.execPath, [CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const seen = new Map<number, string>();
  let watching = true;
  const watch = async (): Promise<void> => {
    while (watching) {
      try {
        const [below, table] = await Promise.all([descendantsOf(child.pid!), processTable()]);
        for (const pid of below) if (table.has(pid)) seen.set(pid, table.get(pid)!);
      } catch {
        /* ps raced with an exit; next round */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const watcher = watch();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      watching = false;
      void watcher.then(() => resolve({ code, signal }));
    }),
  );
  return {
    child,
    output: () => output,
    seen,
    exited,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(output);
        if (match) return match;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${pattern} in demo output:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** Nothing the demo started is still running, nothing mentions its folder, and the folder is gone. */
async function assertNothingLeft(demo: DemoRun, dir: string): Promise<void> {
  assert.ok([...demo.seen.values()].some((args) => args.includes('sshd') && args.includes(dir)), 'the watcher never saw the demo sshds');
  // Give the kernel a moment to reap what was just killed.
  const deadline = Date.now() + 5000;
  for (;;) {
    const table = await processTable();
    const alive = [...demo.seen].filter(([pid, args]) => table.get(pid) === args);
    const mentioning = [...table].filter(([pid, args]) => pid !== process.pid && args.includes(dir));
    if (alive.length === 0 && mentioning.length === 0) break;
    if (Date.now() > deadline) assert.fail(`left behind:\n${[...alive, ...mentioning].map(([p, a]) => `${p} ${a}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(existsSync(dir), false, `${dir} is still there`);
}

test('demo runs every step as expected, shows a refused command and a verified audit log, and leaves nothing behind', { timeout: 90_000 }, async () => {
  const started = Date.now();
  const demo = startDemo([]);
  const { code } = await demo.exited;
  const out = demo.output();
  assert.equal(code, 0, out);
  assert.ok(Date.now() - started < 60_000, 'demo took a minute or more');
  assert.match(out, /All \d+ steps behaved as expected\./);
  assert.match(out, /tunnel up after/);
  assert.match(out, /\[pi-direct, pi-tunnel\] exit 0/);
  assert.match(out, /refused by the policy of "pi-direct" \(deny\[0\]/);
  assert.match(out, /Nothing was run\./);
  assert.match(out, /tail: cannot open '.*\$\(touch \$DEMO\/PWNED\)'/);
  assert.match(out, /#\d+\s+policy_denial\s+pi-direct/);
  assert.match(out, /ok: \d+ record\(s\) in 1 file\(s\) .*hash chain intact/);
  const dir = /fleet in (\S+)/.exec(out)![1]!;
  await assertNothingLeft(demo, dir);
});

test('demo --serve: a separate MCP client attaches with the printed command, reaches both devices, and SIGINT leaves nothing behind', { timeout: 90_000 }, async () => {
  const demo = startDemo(['--serve']);
  try {
    await demo.waitFor(/Press Ctrl-C/);
    const dir = /files in (\S+)/.exec(demo.output())![1]!;
    const [, printed] = (await demo.waitFor(/claude mcp add demo-fleet -- (.+)/));
    const [command, ...args] = printed!.trim().split(' ');
    assert.ok(args.includes('--config') && args.at(-1)!.startsWith(dir), printed);

    const client = new Client({ name: 'demo-attach-test', version: '1.0.0' }, { capabilities: {} });
    await client.connect(new StdioClientTransport({ command: command!, args, stderr: 'pipe' }));
    try {
      type View = { name: string; tunnel: { up: boolean } | null };
      const list = async (): Promise<View[]> =>
        ((await client.callTool({ name: 'list_connections', arguments: {} })).structuredContent as { connections: View[] }).connections;
      assert.deepEqual((await list()).map((c) => c.name).sort(), ['pi-direct', 'pi-tunnel']);
      const deadline = Date.now() + 15_000;
      while (!(await list()).find((c) => c.name === 'pi-tunnel')?.tunnel?.up) {
        assert.ok(Date.now() < deadline, 'pi-tunnel did not dial in to the attached serve within 15 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      const result = await client.callTool({ name: 'run_command', arguments: { connection: 'pi-tunnel', command: 'echo through the tunnel' } });
      assert.notEqual(result.isError, true, JSON.stringify(result.content));
      assert.equal((result.structuredContent as { stdout: string }).stdout, 'through the tunnel\n');
    } finally {
      await client.close();
    }

    demo.child.kill('SIGINT');
    const { code } = await demo.exited;
    assert.equal(code, 0, demo.output());
    assert.match(demo.output(), /SIGINT: fleet stopped\./);
    await assertNothingLeft(demo, dir);
  } finally {
    if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
  }
});

test('SIGTERM in the middle of the scripted demo stops everything it started and removes its folder', { timeout: 90_000 }, async () => {
  const demo = startDemo([]);
  await demo.waitFor(/\[2\/\d+\]/);
  const dir = /fleet in (\S+)/.exec(demo.output())![1]!;
  demo.child.kill('SIGTERM');
  const { code } = await demo.exited;
  assert.equal(code, 1, demo.output());
  assert.match(demo.output(), /interrupted by SIGTERM/);
  await assertNothingLeft(demo, dir);
});

test('without sshd, demo names the package to install and exits 1', { timeout: 30_000 }, async () => {
  const demo = startDemo([], { ...process.env, SSHD_BIN: '/nonexistent/sshd' });
  const { code } = await demo.exited;
  assert.equal(code, 1);
  assert.match(demo.output(), /install the openssh-server package \(Debian\/Ubuntu: sudo apt-get install openssh-server\)/);
});
