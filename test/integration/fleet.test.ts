// Fleet tools against real sshd devices through the built gateway and the real MCP client: run_on_many selects by
// name and tag, groups identical answers (and identical failures) so a big fleet costs one copy of each, applies
// each device's own policy; list_connections pages a big fleet with counts per state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sshd, freePort, makeKeyPair } from '../helpers/sshd.js';
import { startGateway, directConnection, callOk, callError, type GatewayUnderTest } from '../helpers/gateway.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

type Group = { id: number; connections: string[]; error?: string; exit_code?: number | null; stdout?: string };
type FleetResult = { total: number; succeeded: number; nonzero: number; failed: number; groups: Group[]; results: { connection: string; group: number }[] };
type ListResult = { connections: { name: string; state: string }[]; total: number; counts: Record<string, number>; next_offset: number | null };

const FILLERS = 243; // with the 7 real entries: 250 connections, more than one default page of 200

let keys: string;
let a: Sshd;
let b: Sshd;
let gw: GatewayUnderTest;
const deadPorts: number[] = [];

before(async () => {
  keys = await mkdtemp(path.join(tmpdir(), 'mcpgw-fleet-'));
  const clientKey = await makeKeyPair(keys, 'client_ed25519');
  a = await Sshd.start({ clientKey });
  b = await Sshd.start({ clientKey });
  for (let i = 0; i < 3; i++) deadPorts.push(await freePort()); // nothing listens there
  const fast = { retry: { attempts: 1 } };
  gw = await startGateway({
    connections: [
      directConnection(a, 'a1', { tags: ['pi'] }),
      directConnection(a, 'a2', { tags: ['pi'] }),
      directConnection(a, 'a3', { tags: ['pi', 'lab'] }),
      directConnection(b, 'b1', { tags: ['pi'], policy: { read_only: true } }),
      ...deadPorts.map((port, i) => ({ ...directConnection(a, `dead${i + 1}`, { tags: ['pi'], ...fast }), port })),
      ...Array.from({ length: FILLERS }, (_, i) => ({ ...directConnection(a, `filler${String(i).padStart(3, '0')}`, { tags: ['filler'] }) })),
    ],
  });
});

after(async () => {
  await gw?.close();
  await a?.stop();
  await b?.stop();
  await rm(keys, { recursive: true, force: true });
});

/** Prints the HOME each test sshd sets for its logins: the same for every connection to one device. */
const WHICH_DEVICE = 'printenv HOME';

test('run_on_many by tag groups identical answers, and identical failures, once each', async () => {
  const r = await callOk<FleetResult>(gw, 'run_on_many', { tags: ['pi'], command: WHICH_DEVICE, concurrency: 3 });
  assert.equal(r.total, 7);
  assert.equal(r.succeeded, 4, JSON.stringify(r.groups));
  assert.equal(r.failed, 3);
  assert.equal(r.groups.length, 3, JSON.stringify(r.groups));
  const byDevice = (name: string): Group => r.groups[r.results.find((x) => x.connection === name)!.group]!;
  assert.deepEqual(byDevice('a1').connections, ['a1', 'a2', 'a3']);
  const homeA = byDevice('a1').stdout;
  assert.deepEqual(byDevice('b1').connections, ['b1']);
  assert.ok(homeA && byDevice('b1').stdout && byDevice('b1').stdout !== homeA, 'two devices, two answers');
  const dead = byDevice('dead1');
  assert.deepEqual(dead.connections, ['dead1', 'dead2', 'dead3'], 'three refused devices are one group');
  assert.match(dead.error ?? '', /connection refused by <host>:<port> for <connection>/);
  assert.ok(!/dead\d|\d{4,5}/.test(dead.error ?? ''), `no device's own name or port is left in the shared error: ${dead.error}`);
});

test('run_on_many takes names and tags together, each device once, and applies each device\'s own policy', async () => {
  const r = await callOk<FleetResult>(gw, 'run_on_many', { connections: ['a1', 'b1'], tags: ['lab'], command: 'echo hi > /dev/null; echo done > /tmp/mcpgw-fleet-never' });
  assert.equal(r.total, 3);
  assert.deepEqual(r.results.map((x) => x.connection), ['a1', 'b1', 'a3']);
  const b1 = r.groups[r.results.find((x) => x.connection === 'b1')!.group]!;
  assert.match(b1.error ?? '', /read-only/, 'the read-only device refuses the write');
  assert.deepEqual(b1.connections, ['b1']);
  await rm('/tmp/mcpgw-fleet-never', { force: true });
});

test('run_on_many says what is wrong with its selection', async () => {
  assert.match(await callError(gw, 'run_on_many', { tags: ['nope'], command: 'true' }), /no connection carries tag "nope". Tags in use: pi, lab, filler/);
  assert.match(await callError(gw, 'run_on_many', { connections: ['ghost'], command: 'true' }), /ghost/);
  assert.match(await callError(gw, 'run_on_many', { command: 'true' }), /give "connections" \(names\) and\/or "tags"/);
});

test('list_connections pages a big fleet with counts per state, and filters by state', async () => {
  const first = await gw.client.callTool({ name: 'list_connections', arguments: {} });
  const page = first.structuredContent as ListResult;
  assert.equal(page.connections.length, 200, 'one default page');
  assert.equal(page.total, 250);
  assert.equal(page.next_offset, 200);
  const text = (first.content as { text: string }[])[0]!.text;
  assert.match(text, /^connections 1-200 of 250 \(.*\); next page: offset=200\n/);

  const last = await callOk<ListResult>(gw, 'list_connections', { offset: 200 });
  assert.equal(last.connections.length, 50);
  assert.equal(last.next_offset, null);
  assert.equal(last.connections.at(-1)!.name, `filler${FILLERS - 1}`);

  const small = await callOk<ListResult>(gw, 'list_connections', { tag: 'pi', limit: 3, offset: 2 });
  assert.deepEqual(small.connections.map((c) => c.name), ['a3', 'b1', 'dead1']);
  assert.equal(small.total, 7);
  assert.equal(small.next_offset, 5);

  const failing = await callOk<ListResult>(gw, 'list_connections', { tag: 'pi', state: 'failing' });
  assert.deepEqual(failing.connections.map((c) => c.name), ['dead1', 'dead2', 'dead3']);
  assert.equal(failing.total, 3);
  assert.equal(failing.counts.failing, 3, 'counts cover the tag, whatever the state filter');
  assert.equal(failing.counts.connected, 4);

  const untagged = await gw.client.callTool({ name: 'list_connections', arguments: { tag: 'pi' } });
  assert.ok(!(untagged.content as { text: string }[])[0]!.text.startsWith('connections '), 'a fleet that fits one page is listed as before');
  assert.match(await callError(gw, 'list_connections', { state: 'sleepy' }), /state/);
});
