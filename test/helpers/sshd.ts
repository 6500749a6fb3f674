// A real OpenSSH sshd, started unprivileged-style on a free loopback port with keys made at run time.
// Tests and benchmarks use it as "the device": nothing here mocks SSH.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, readFile, rm, mkdir, chmod } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SSHD_BIN = process.env.SSHD_BIN ?? '/usr/sbin/sshd';

export interface KeyPair {
  privatePath: string;
  publicPath: string;
  publicLine: string;
}

export async function makeKeyPair(dir: string, name: string, passphrase = ''): Promise<KeyPair> {
  const privatePath = path.join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', name, '-f', privatePath]);
  const publicLine = (await readFile(`${privatePath}.pub`, 'utf8')).trim();
  return { privatePath, publicPath: `${privatePath}.pub`, publicLine };
}

/** `SHA256:...` fingerprint of an OpenSSH public key line, as `ssh-keygen -lf` prints it. */
export function fingerprintOf(publicLine: string): string {
  const blob = Buffer.from(publicLine.split(/\s+/)[1], 'base64');
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something on host:port answers with an SSH banner. */
export async function waitForSshBanner(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, host);
      sock.setTimeout(1000);
      sock.once('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('SSH-')); });
      sock.once('error', () => resolve(false));
      sock.once('timeout', () => { sock.destroy(); resolve(false); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`no SSH banner on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface SshdOptions {
  /** Extra sshd_config lines. */
  extraConfig?: string[];
  /** Reuse an existing host key (to restart "the same device"), else a new one is made. */
  hostKey?: KeyPair;
  /** Reuse an existing client key. */
  clientKey?: KeyPair;
  port?: number;
}

export class Sshd {
  process?: ChildProcess;
  log = '';
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly hostKey: KeyPair,
    readonly clientKey: KeyPair,
    readonly home: string,
    private readonly configPath: string,
  ) {}

  readonly host = '127.0.0.1';
  readonly user = process.env.USER && process.env.USER !== '' ? process.env.USER : 'root';

  get hostKeyFingerprint(): string {
    return fingerprintOf(this.hostKey.publicLine);
  }

  /** The known_hosts line OpenSSH would write for this sshd. */
  get knownHostsLine(): string {
    const [type, blob] = this.hostKey.publicLine.split(/\s+/);
    return `[${this.host}]:${this.port} ${type} ${blob}`;
  }

  static async start(options: SshdOptions = {}): Promise<Sshd> {
    const dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-sshd-'));
    await chmod(dir, 0o755);
    const home = path.join(dir, 'home');
    await mkdir(home, { mode: 0o755 });
    const hostKey = options.hostKey ?? (await makeKeyPair(dir, 'ssh_host_ed25519_key'));
    const clientKey = options.clientKey ?? (await makeKeyPair(dir, 'client_ed25519'));
    const authorizedKeys = path.join(dir, 'authorized_keys');
    await writeFile(authorizedKeys, clientKey.publicLine + '\n', { mode: 0o600 });
    const port = options.port ?? (await freePort());
    const configPath = path.join(dir, 'sshd_config');
    const config = [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey.privatePath}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      // The temp dir lives under world-writable /tmp, which StrictModes would reject.
      'StrictModes no',
      'MaxStartups 100:30:200',
      'MaxSessions 10',
      'AllowTcpForwarding yes',
      'Subsystem sftp internal-sftp',
      // A clean HOME so the login shell's rc files (pyenv here) don't dominate every command.
      `SetEnv HOME=${home}`,
      'LogLevel VERBOSE',
      ...(options.extraConfig ?? []),
    ];
    await writeFile(configPath, config.join('\n') + '\n');
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => undefined);
    const sshd = new Sshd(dir, port, hostKey, clientKey, home, configPath);
    await sshd.launch();
    return sshd;
  }

  async launch(): Promise<void> {
    const child = spawn(SSHD_BIN, ['-D', '-e', '-f', this.configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.process = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.log += d.toString();
      if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
    });
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`sshd exited early (code ${code}):\n${this.log}`))),
    );
    await Promise.race([waitForSshBanner(this.port), exited]);
  }

  /** Stops the listener and every session it forked (the whole "device" goes away). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    // Forked per-connection sshd processes (and the commands they run) survive their listener; end them too.
    const forked = await descendantsOf(child.pid!);
    const gone = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    for (const pid of forked) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    await gone;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Every process below `pid`, children first found by walking `ps`'s parent links. */
export async function descendantsOf(pid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,ppid=']);
  const children = new Map<number, number[]>();
  for (const line of stdout.trim().split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}
