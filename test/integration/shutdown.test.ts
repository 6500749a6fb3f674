// A gateway that stops (its client went away, or SIGTERM) stops the commands it started, on the device too.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Sshd } from '../helpers/sshd.js';
import { startGateway, directConnection } from '../helpers/gateway.js';

const run = promisify(execFile);
let sshd: Sshd | undefined;
after(async () => {
  await sshd?.stop();
});

async function running(pattern: string): Promise<boolean> {
  return run('pgrep', ['-f', pattern]).then(
    () => true,
    () => false,
  );
}

test('when the client disconnects, a running command is killed on the device and its end is audited', async () => {
  sshd = await Sshd.start();
  const gw = await startGateway([directConnection(sshd)]);
  const pid = gw.pid();
  const call = gw.client.callTool({ name: 'run_command', arguments: { connection: 'dev1', command: 'sleep 3021; echo never' } }).catch(() => undefined);
  for (let i = 0; i < 50 && !(await running('sleep 3021')); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await running('sleep 3021'), true, 'the command started on the device');

  const auditPath = gw.auditPath;
  const records = (): { event: string; cancelled?: boolean }[] =>
    readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; cancelled?: boolean });
  await gw.client.close();
  void call;
  // The gateway process exits on its own once stdin closes.
  for (let i = 0; i < 100 && pid !== undefined && (await run('kill', ['-0', String(pid)]).then(() => true, () => false)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await running('sleep 3021'), false, 'the remote command was killed');
  const events = records();
  const end = events.find((r) => r.event === 'command_end');
  assert.ok(end, 'command_end recorded');
  assert.equal(end.cancelled, true);
  assert.equal(events.at(-1)?.event, 'gateway_stop');
  await gw.close();
});
