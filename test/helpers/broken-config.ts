// A config with one problem of every kind the loader must report, and where each problem must be reported.
import { writeFile, copyFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { makeKeyPair } from './sshd.js';

/** A config with one problem of every kind; used by the CLI test as well. */
export async function writeBrokenConfig(folder: string): Promise<{ file: string; expected: [string, RegExp][] }> {
  const good = await makeKeyPair(folder, 'good_key');
  const open = await makeKeyPair(folder, 'open_key');
  await chmod(open.privatePath, 0o644);
  const garbage = path.join(folder, 'garbage_key');
  await writeFile(garbage, 'this is not a key\n', { mode: 0o600 });
  const publicAsPrivate = path.join(folder, 'public_as_private');
  await copyFile(good.publicPath, publicAsPrivate);
  await chmod(publicAsPrivate, 0o600);
  const locked = await makeKeyPair(folder, 'locked_key', 'sesame');
  const edge = await makeKeyPair(folder, 'edge_key');
  const host = await makeKeyPair(folder, 'host_key');
  const base = { mode: 'direct', user: 'root', host: '127.0.0.1', port: 22, id_file: good.privatePath };
  const config = {
    gateway: { tunnel_host_key: host.privatePath },
    connections: [
      { ...base, name: 'ok-1' },
      { ...base, name: 'typo', colour: 'blue' },
      { ...base, name: 'ok-1', port: 2222 },
      { ...base, name: 'telnet', mode: 'telnet' },
      { ...base, name: 'missing-key', id_file: 'no/such/key' },
      { ...base, name: 'open-key', id_file: open.privatePath },
      { ...base, name: 'garbage-key', id_file: garbage },
      { ...base, name: 'public-key', id_file: publicAsPrivate },
      { ...base, name: 'bad-regex', policy: { deny: ['^ok$', 'rm (-rf'] } },
      { ...base, name: 'tunnel-a', mode: 'tunnel', port: 22222, edge_public_key: edge.publicLine },
      { ...base, name: 'tunnel-b', mode: 'tunnel', port: 22222, edge_public_key: edge.publicLine },
      { ...base, name: 'tunnel-far', mode: 'tunnel', host: '10.1.2.3', port: 22223, edge_public_key: edge.publicLine },
      { ...base, name: 'locked', id_file: locked.privatePath, passphrase_env: 'MCPGW_TEST_UNSET_PASSPHRASE' },
    ],
  };
  const file = path.join(folder, 'broken.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  const expected: [string, RegExp][] = [
    ['connections[1].colour', /unknown field "colour"/],
    ['connections[2].name', /duplicate name "ok-1"/],
    ['connections[3].mode', /"direct", "tunnel"/],
    ['connections[4].id_file', /no such file/],
    ['connections[5].id_file', /readable by group or others.*chmod 600/],
    ['connections[6].id_file', /does not parse/],
    ['connections[7].id_file', /public key/],
    ['connections[8].policy.deny[1]', /not a valid regular expression/],
    ['connections[10].port', /tunnel port 22222 is already used by "tunnel-a"/],
    ['connections[11].host', /must be loopback/],
    ['connections[12].passphrase_env', /MCPGW_TEST_UNSET_PASSPHRASE is not set/],
  ];
  return { file, expected };
}

