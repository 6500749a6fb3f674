// `npm run bench`: every benchmark, each comparing the gateway with OpenSSH (or sshd) in the same run.
import { benchCommandLatency } from './command-latency.js';

function ms(n: number): string {
  return `${n.toFixed(2)} ms`;
}

const latency = await benchCommandLatency();
console.log('\nwarm `true`, 200 runs each (same sshd, same run)');
console.log(`  gateway run_command over MCP stdio: median ${ms(latency.gateway.median)}  p95 ${ms(latency.gateway.p95)}`);
console.log(`  OpenSSH ControlMaster ssh -S:       median ${ms(latency.openssh.median)}  p95 ${ms(latency.openssh.p95)}`);
console.log(`  ratio (gateway / OpenSSH, median):  ${latency.ratio.toFixed(2)}x   (target <= 0.5x)`);
console.log(`  ratio (p95):                        ${(latency.gateway.p95 / latency.openssh.p95).toFixed(2)}x`);

if (process.env.BENCH_SKIP_TUNNELS !== '1') {
  const { runTunnelMemoryBench } = await import('./tunnel-memory.js');
  await runTunnelMemoryBench(Number(process.env.BENCH_TUNNELS ?? 1000));
}
