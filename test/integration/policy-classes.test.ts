// The bypass classes an adversarial review found around the shell reader, replayed against real sshd devices
// whose commands run under bash, dash and busybox ash, through the real MCP client. Each attempt would read a
// secret or create a marker file if the policy let it through; the promise is that none does, while the same
// rules still let the ordinary commands run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sshd, type DeviceShell } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, type GatewayUnderTest } from '../helpers/gateway.js';

const SHELLS: DeviceShell[] = ['bash', 'dash', 'busybox'];
const SECRET = 's3cr3t-line';

let work: string;
let logs: string;
let reports: string;
let secret: string;
const devices: Sshd[] = [];
let gw: GatewayUnderTest;

function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'mcpgw-classes-'));
  logs = path.join(work, 'logs');
  reports = path.join(work, 'reports');
  secret = path.join(work, 'secret.txt');
  await mkdir(logs);
  await mkdir(reports);
  await writeFile(path.join(logs, 'app.log'), 'two words here\nsecond line\n');
  await writeFile(secret, `${SECRET}\n`);
  await symlink(secret, path.join(logs, 'link.log'));
  const guarded = {
    allow: [
      `^cat ${re(logs)}/\\S+$`,
      '^cat$',
      `^<${re(logs)}/\\S+$`,
      '^uptime$',
      `^>${re(reports)}/\\S+$`,
      `^grep -F '[^']*' ${re(logs)}/[a-z]+\\.log$`,
      { argv: ['tail', '-n', { type: 'integer', min: 1, max: 50 }, { type: 'path', roots: [logs] }] },
    ],
  };
  const denyOnly = { deny: ['\\btouch\\b', 'secret'] };
  const connections: Record<string, unknown>[] = [];
  for (const shell of SHELLS) {
    const sshd = await Sshd.start({ shell });
    devices.push(sshd);
    connections.push(directConnection(sshd, `${shell}-guarded`, { policy: guarded }));
    connections.push(directConnection(sshd, `${shell}-denyonly`, { policy: denyOnly }));
  }
  gw = await startGateway({ connections });
});

after(async () => {
  await gw?.close();
  for (const sshd of devices) await sshd.stop();
  await rm(work, { recursive: true, force: true });
});

async function refused(connection: string, command: string): Promise<string> {
  const result = await gw.client.callTool({ name: 'run_command', arguments: { connection, command } });
  const text = (result.content as { text: string }[]).map((c) => c.text).join('\n');
  assert.equal(result.isError, true, `${connection}: ${command}\nexpected a refusal, got ${text}`);
  assert.match(text, /refused|Nothing was run/, text);
  assert.ok(!text.includes(SECRET), `${connection}: the secret came back: ${text}`);
  return text;
}

async function runs(connection: string, command: string): Promise<string> {
  const result = await callOk<{ exit_code: number; stdout: string }>(gw, 'run_command', { connection, command });
  assert.equal(result.exit_code, 0, `${connection}: ${command}`);
  return result.stdout;
}

for (const shell of SHELLS) {
  test(`${shell}: .. in a redirection target is refused (reading or writing)`, async () => {
    const text = await refused(`${shell}-guarded`, `cat <${logs}/../secret.txt`);
    assert.match(text, /\.\./);
    const written = path.join(work, `written-${shell}.txt`);
    await refused(`${shell}-guarded`, `uptime >${reports}/../${path.basename(written)}`);
    assert.equal(existsSync(written), false, 'the file outside reports/ was written');
    assert.match(await runs(`${shell}-guarded`, `cat <${logs}/app.log`), /two words/);
    await runs(`${shell}-guarded`, `uptime >${reports}/ok-${shell}.txt`);
    assert.equal(existsSync(path.join(reports, `ok-${shell}.txt`)), true);
  });

  test(`${shell}: a glob that can match .. never gets out of an allowed folder`, async () => {
    const text = await refused(`${shell}-guarded`, `cat ${logs}/.*/secret.txt`);
    assert.match(text, /`\.\.`/);
    await refused(`${shell}-guarded`, `cat ${logs}/.?/secret.txt`);
    assert.match(await runs(`${shell}-guarded`, `cat ${logs}/*.log`), /two words/, 'an ordinary glob still works');
  });

  test(`${shell}: a quote inside a word can't make one quoted argument read as several`, async () => {
    await refused(`${shell}-guarded`, `grep -F "'" -e . ${secret} "x'" ${logs}/app.log`);
    assert.match(await runs(`${shell}-guarded`, `grep -F 'two words' ${logs}/app.log`), /two words here/);
  });

  test(`${shell}: a script given to sh -c or eval is judged like the line itself`, async () => {
    const marker = path.join(work, `nested-${shell}`);
    for (const command of [
      `sh -c "t''ouch ${marker}"`,
      `eval "t''ouch ${marker}"`,
      `env sh -c "t''ouch ${marker}"`,
      `find ${logs} -maxdepth 0 -exec sh -c "t''ouch ${marker}" \\;`,
      `echo "t''ouch ${marker}" | sh`,
    ]) {
      await refused(`${shell}-denyonly`, command);
      assert.equal(existsSync(marker), false, `${command}: the marker was created`);
    }
    assert.match(await runs(`${shell}-denyonly`, "sh -c 'echo nested-ok'"), /nested-ok/);
  });

  test(`${shell}: a structured rule runs what it admits, and its path slot is checked on the device`, async () => {
    assert.match(await runs(`${shell}-guarded`, `tail -n 1 ${logs}/app.log`), /second line/);
    const text = await refused(`${shell}-guarded`, `tail -n 1 ${logs}/link.log`);
    assert.match(text, /resolves/);
    await refused(`${shell}-guarded`, `tail -n 100 ${logs}/app.log`);
    await refused(`${shell}-guarded`, `tail -n 1 ${secret}`);
  });
}
