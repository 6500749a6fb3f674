// keygen: an ed25519 host key for the tunnel server and a client key pair for the gateway's logins to devices.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { utils } from '../ssh/ssh2.js';
import { parseCommandArgs, requireOption } from './args.js';
import { ExitError } from './errors.js';

/** ssh2 1.17 sometimes (about 1 in 256) drops a leading zero byte of an ed25519 public key; such a pair never parses. */
function generateParsableKeyPair(comment: string): { private: string; public: string } {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair;
  }
}

function writeKeyPair(dir: string, name: string, comment: string): string[] {
  const privatePath = path.join(dir, name);
  for (const file of [privatePath, `${privatePath}.pub`]) {
    if (existsSync(file)) throw new ExitError(`${file} already exists; refusing to overwrite a key (move it away or choose another --out)`, 1);
  }
  const { private: privateKey, public: publicKey } = generateParsableKeyPair(comment);
  writeFileSync(privatePath, privateKey, { mode: 0o600, flag: 'wx' });
  writeFileSync(`${privatePath}.pub`, publicKey.trim() + '\n', { mode: 0o644, flag: 'wx' });
  return [privatePath, `${privatePath}.pub`];
}

export async function keygenCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, { out: { type: 'string' } });
  const dir = path.resolve(requireOption(values.out, '--out'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written = [
    ...writeKeyPair(dir, 'tunnel_host_ed25519_key', 'mcp-ssh-gateway tunnel host key'),
    ...writeKeyPair(dir, 'id_ed25519', 'mcp-ssh-gateway client key'),
  ];
  process.stdout.write(
    written.map((f) => `wrote ${f}`).join('\n') +
      `\n\nUse "tunnel_host_key": "${written[0]}" in the gateway section, and "id_file": "${written[2]}" for connections;` +
      `\nadd ${written[3]} to each device's ~/.ssh/authorized_keys.\n`,
  );
  return 0;
}
