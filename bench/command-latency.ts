// Warm `run_command true` through the gateway (MCP over stdio) versus OpenSSH ControlMaster (`ssh -S sock host true`)
// to the same real sshd, in the same run. Reports median and p95 and their ratio (target: gateway ≤ 0.5×).
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { Sshd } from '../test/helpers/sshd.js';
import { startGateway, directConnection } from '../test/helpers/gateway.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const WARMUP = 10;

function stats(samples: number[]): { median: number; p95: number; mean: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { median: at(0.5), p95: at(0.95), mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function measure(fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) samples.push(await time(fn));
  return samples;
}

export async function benchCommandLatency(): Promise<{ gateway: ReturnType<typeof stats>; openssh: ReturnType<typeof stats>; ratio: number }> {
  const sshd = await Sshd.start();
  const control = path.join(sshd.dir, 'ctl');
  const sshArgs = [
    '-i', sshd.clientKey.privatePath, '-p', String(sshd.port),
    '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=/dev/null`, '-o', 'LogLevel=ERROR',
  ];
  const master = spawn('ssh', [...sshArgs, '-M', '-N', '-S', control, `${sshd.user}@${sshd.host}`], { stdio: 'ignore' });
  const gw = await startGateway({
    gateway: { audit_fsync: process.env.BENCH_AUDIT_FSYNC === 'never' ? 'never' : 'always' },
    connections: [directConnection(sshd)],
  });
  try {
    // Wait for the master to be up.
    for (let i = 0; i < 100; i++) {
      const ok = await run('ssh', ['-S', control, '-O', 'check', 'x']).then(() => true, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const openssh = await measure(() => run('ssh', [...sshArgs, '-S', control, `${sshd.user}@${sshd.host}`, 'true']));
    const gateway = await measure(async () => {
      const result = await gw.client.callTool({ name: 'run_command', arguments: { connection: 'dev1', command: 'true' } });
      if (result.isError) throw new Error(JSON.stringify(result.content));
    });
    const g = stats(gateway);
    const o = stats(openssh);
    return { gateway: g, openssh: o, ratio: g.median / o.median };
  } finally {
    master.kill();
    await gw.close();
    await sshd.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchCommandLatency();
  console.log(JSON.stringify(r, null, 2));
}
