// demo: the whole product on this machine, loopback only. A throwaway fleet (two real sshd devices, one of them
// behind a real `ssh -N -R` tunnel), then either a scripted MCP session against `serve` (default) or, with
// --serve, the fleet kept up for a real client to attach to. Everything it starts or writes is removed on the
// way out, Ctrl-C and SIGTERM included.
import { Cleanup, Interrupted } from '../demo/cleanup.js';
import { buildFleet, checkPrerequisites, type Fleet } from '../demo/fleet.js';
import { MissingOpenSshError } from '../demo/local-sshd.js';
import { Printer } from '../demo/print.js';
import { startServe, type ServeSession } from '../demo/serve-client.js';
import { STEPS, Unexpected } from '../demo/steps.js';
import { attachInstructions } from '../demo/attach.js';
import { DIRECT, TUNNEL, POLICY_SUMMARY } from '../demo/config.js';
import { parseCommandArgs } from './args.js';
import { ExitError } from './errors.js';

type Outcome = { code: number; summary: string[] };

function describeFleet(print: Printer, fleet: Fleet): void {
  print.line(`fleet in ${fleet.dir} (shown as $DEMO below)`);
  print.abbreviate(fleet.dir);
  print.line(`  ${DIRECT.padEnd(10)} real sshd on 127.0.0.1:${fleet.direct.port}, host key ${fleet.direct.hostKeyFingerprint} pinned; the gateway dials it`);
  print.line(`  ${TUNNEL.padEnd(10)} real sshd on 127.0.0.1:${fleet.tunnel.port}, host key ${fleet.tunnel.hostKeyFingerprint} pinned; it dials the gateway (ssh -N -R)`);
  print.line(`  gateway    serve --config $DEMO/connections.json over stdio, tunnel server on 127.0.0.1:${fleet.tunnelListenPort}`);
  POLICY_SUMMARY.forEach((line, i) => print.line(`  ${i === 0 ? 'policy' : ''}`.padEnd(13) + line));
}

async function scripted(print: Printer, cleanup: Cleanup): Promise<Outcome> {
  const fleet = await buildFleet(cleanup);
  describeFleet(print, fleet);
  const session: ServeSession = await startServe(fleet.configPath, cleanup);
  cleanup.throwIfInterrupted();
  fleet.tunnelClient.start();
  const failed: string[] = [];
  for (const [i, step] of STEPS.entries()) {
    cleanup.throwIfInterrupted();
    print.heading(i + 1, STEPS.length, step.title);
    try {
      await step.run({ fleet, session, print });
    } catch (err) {
      if (cleanup.interrupted) throw new Interrupted(`interrupted by ${cleanup.interrupted}`);
      const why = err instanceof Unexpected ? err.message : `error: ${(err as Error).message}`;
      print.fail(why);
      failed.push(`step ${i + 1} (${step.title.split(' ')[0]}): ${why}`);
    }
  }
  if (failed.length === 0) return { code: 0, summary: [`All ${STEPS.length} steps behaved as expected.`] };
  const stderr = session.stderr().trim().split('\n').slice(-15).map((l) => `  ${l}`);
  return { code: 1, summary: [`FAILED: ${failed.length} of ${STEPS.length} steps did not behave as expected:`, ...failed.map((f) => `  ${f}`), 'gateway stderr (last lines):', ...stderr] };
}

async function keepUp(print: Printer, cleanup: Cleanup): Promise<Outcome> {
  const fleet = await buildFleet(cleanup);
  fleet.tunnelClient.start();
  print.line(attachInstructions(fleet));
  print.line();
  print.line('Press Ctrl-C to stop the fleet and remove everything.');
  const signal = await cleanup.untilSignal();
  return { code: 0, summary: [`${signal}: fleet stopped.`] };
}

/** After a signal, the body gets this long to reach a checkpoint before cleanup starts regardless. */
const SETTLE_MS = 5000;

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, { serve: { type: 'boolean' } });
  try {
    checkPrerequisites();
  } catch (err) {
    if (err instanceof MissingOpenSshError) throw new ExitError(err.message, 1);
    throw err;
  }
  const print = new Printer();
  const cleanup = new Cleanup();
  const serveMode = values.serve === true;
  print.line(`mcp-ssh-gateway demo${serveMode ? ' --serve' : ''}: a throwaway fleet on this machine, loopback only`);
  const started = Date.now();

  const body: Promise<Outcome> = (serveMode ? keepUp : scripted)(print, cleanup).catch((err: unknown) =>
    err instanceof Interrupted ? { code: 1, summary: [] } : { code: 1, summary: [`FAILED: ${(err as Error).message}`] },
  );
  let settleTimer: NodeJS.Timeout | undefined;
  const settled = cleanup.untilSignal().then(() => Promise.race([body, new Promise<void>((r) => (settleTimer = setTimeout(r, SETTLE_MS)))]));
  let outcome = await Promise.race([body, settled.then(() => undefined)]);
  clearTimeout(settleTimer);
  const signal = cleanup.interrupted;
  if (signal && !serveMode) outcome = { code: 1, summary: [`FAILED: interrupted by ${signal}.`] };
  else if (signal) outcome = { code: 0, summary: [`${signal}: fleet stopped.`] };

  print.line();
  print.line('cleaning up: stopping the tunnel device, serve and both sshds, removing the demo folder');
  const problems = await cleanup.run();
  const result = outcome ?? { code: 1, summary: ['FAILED: no outcome'] };
  for (const line of result.summary) print.line(line);
  const left = problems === 0 ? 'nothing left behind' : `${problems} cleanup step(s) failed (see stderr)`;
  print.line(`done in ${((Date.now() - started) / 1000).toFixed(1)} s; ${left}.`);
  const code = problems > 0 ? 1 : result.code;
  // Should anything still hold the event loop after an interrupt, do not linger.
  if (signal) setTimeout(() => process.exit(code), 3000).unref();
  return code;
}
