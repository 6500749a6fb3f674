// Writes never make a setuid/setgid program, and an upload's approval is bound to the staged bytes: against a
// real sshd (a bash device and a dash device) through the real MCP client. The tests run as root, so the
// replaced files are setuid root programs, the worst case.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sshd, type DeviceShell } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';

const SHELLS: DeviceShell[] = ['bash', 'dash'];
const devices = new Map<DeviceShell, Sshd>();
let gw: GatewayUnderTest;
let base: string;
let work: string;
let staging: string;
const asked: string[] = [];
/** Runs once, on the first approval question: what the agent does while the human reads it. */
let duringQuestion: (() => Promise<void>) | undefined;

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const mode = (file: string): string => (statSync(file).mode & 0o7777).toString(8).padStart(4, '0');
const debris = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((name) => name.includes('.mcpgw-'));

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'mcpgw-files-setuid-'));
  work = path.join(base, 'device');
  staging = path.join(base, 'staging');
  await Promise.all([mkdir(path.join(work, 'confirm'), { recursive: true }), mkdir(staging)]);
  for (const shell of SHELLS) devices.set(shell, await Sshd.start({ shell }));
  gw = await startGateway(
    {
      gateway: { staging_dir: staging },
      connections: SHELLS.flatMap((shell) => [
        directConnection(devices.get(shell)!, shell),
        directConnection(devices.get(shell)!, `${shell}-guarded`, { policy: { allow: ['^read_file '], confirm: [`^write_file ${esc(work)}/confirm/`] } }),
      ]),
    },
    {
      capabilities: { elicitation: { form: {} } },
      setup: (client) =>
        client.setRequestHandler('elicitation/create', async (request) => {
          const message = (request.params as { message: string }).message;
          asked.push(message);
          const swap = duringQuestion;
          duringQuestion = undefined;
          await swap?.();
          // The human approves only the first thing shown to them.
          return { action: 'accept', content: { approve: asked.length === 1 } };
        }),
    },
  );
});

after(async () => {
  await gw?.close();
  await Promise.all([...devices.values()].map((d) => d.stop()));
  await rm(base, { recursive: true, force: true });
});

/** A setuid (and setgid) root program, as the agent would find one. */
async function setuidProgram(file: string, bits: number): Promise<void> {
  await writeFile(file, '#!/bin/sh\necho original\n');
  await chmod(file, bits);
  assert.equal(mode(file), bits.toString(8).padStart(4, '0'));
}

for (const shell of SHELLS) {
  test(`${shell} device: write_file over a setuid/setgid root program leaves its permission bits and owner, without setuid/setgid`, async () => {
    const dir = path.join(work, `${shell}-write`);
    await mkdir(dir);
    for (const bits of [0o4755, 0o6750, 0o2775, 0o1755]) {
      const file = path.join(dir, `prog-${bits.toString(8)}`);
      await setuidProgram(file, bits);
      const r = await callOk<{ mode: string; replaced: boolean }>(gw, 'write_file', { connection: shell, path: file, content: '#!/bin/sh\necho agent\n' });
      const expected = (bits & 0o777).toString(8).padStart(4, '0');
      assert.deepEqual([r.mode, r.replaced, mode(file)], [expected, true, expected], `replacing ${bits.toString(8)}`);
      assert.equal(statSync(file).uid, 0, 'the owner is kept (root)');
      assert.equal(await readFile(file, 'utf8'), '#!/bin/sh\necho agent\n');
    }
    assert.deepEqual(await debris(dir), []);
  });

  test(`${shell} device: upload_file over a setuid root program leaves it without setuid/setgid`, async () => {
    const dir = path.join(work, `${shell}-upload`);
    await mkdir(dir);
    const file = path.join(dir, 'prog');
    await setuidProgram(file, 0o6755);
    await writeFile(path.join(staging, `${shell}-prog`), '#!/bin/sh\necho uploaded\n');
    await callOk(gw, 'upload_file', { connection: shell, local_path: `${shell}-prog`, remote_path: file });
    assert.equal(mode(file), '0755');
    assert.equal(await readFile(file, 'utf8'), '#!/bin/sh\necho uploaded\n');
    // a new file gets the staged file's permission bits, which can't carry setuid either
    await chmod(path.join(staging, `${shell}-prog`), 0o750);
    await callOk(gw, 'upload_file', { connection: shell, local_path: `${shell}-prog`, remote_path: path.join(dir, 'new') });
    assert.equal(mode(path.join(dir, 'new')), '0750');
    assert.deepEqual(await debris(dir), []);
  });

  test(`${shell} device: an explicit mode with setuid, setgid or sticky bits is refused and nothing is written`, async () => {
    const file = path.join(work, `${shell}-explicit`);
    for (const asked of ['4755', '2755', '6755', '1755', '04755']) {
      assert.match(await callError(gw, 'write_file', { connection: shell, path: file, content: '#!/bin/sh\n', mode: asked }), /setuid and setgid bits/, asked);
    }
    assert.throws(() => statSync(file), /ENOENT/);
  });

  test(`${shell} device: swapping the staged bytes after the upload was approved replaces nothing; the human is asked about the new bytes`, async () => {
    asked.length = 0;
    const remote = path.join(work, 'confirm', `${shell}-firmware.bin`);
    await writeFile(remote, 'DEVICE ORIGINAL');
    const approved = 'the firmware the human looked at';
    await writeFile(path.join(staging, `${shell}-fw.bin`), approved);
    const swapped = path.join(work, `${shell}-evil.bin`);
    await writeFile(swapped, 'EVIL PAYLOAD, SWAPPED IN AFTER THE APPROVAL');
    // While the human reads the question, the agent swaps the staged file with its own tool.
    duringQuestion = async () => {
      await callOk(gw, 'download_file', { connection: shell, local_path: `${shell}-fw.bin`, remote_path: swapped, overwrite: true });
    };
    const error = await callError(gw, 'upload_file', { connection: `${shell}-guarded`, local_path: `${shell}-fw.bin`, remote_path: remote });
    assert.equal(duringQuestion, undefined, 'the swap happened during the question');
    assert.ok(asked[0]?.includes(`${Buffer.byteLength(approved)} bytes, sha256 ${sha256(approved)}`), `the human saw the size and sha256: ${asked[0]}`);
    assert.ok(asked[1]?.includes(`sha256 ${sha256(await readFile(swapped))}`), `the swapped bytes needed their own approval: ${asked[1]}`);
    assert.match(error, /declined/);
    assert.equal(await readFile(remote, 'utf8'), 'DEVICE ORIGINAL', 'nothing was replaced');
    assert.deepEqual(await debris(path.dirname(remote)), []);
  });
}
