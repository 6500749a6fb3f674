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
  const { benchTunnelMemory } = await import('./tunnel-memory.js');
  const tunnels = Number(process.env.BENCH_TUNNELS ?? 1000);
  const r = await benchTunnelMemory(tunnels, tunnels);
  const per = r.marginal.tunnelWithWarmConnection;
  console.log(`\nsummary: ${r.tunnels} idle tunnels with warm connections`);
  console.log(`  gateway per idle tunnel (marginal): ${per.heap.toFixed(1)} KiB heap, ${per.rss.toFixed(1)} KiB RSS   (target <= 64 KiB)`);
  console.log(`  sshd per connection, same run:      ${r.sshdPerConnection.rssKiB.toFixed(0)} KiB RSS, ${r.sshdPerConnection.pssKiB.toFixed(0)} KiB PSS`);
  console.log(`  tunnel logins per second:           ${r.loginsPerSecond.toFixed(0)}`);
}
