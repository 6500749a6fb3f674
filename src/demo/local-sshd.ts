// A real OpenSSH sshd on a free loopback port, with keys made at run time: "a device" on this machine.
// The demo's fleet and the test suite both use it; nothing here mocks SSH.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdtemp, writeFile, readFile, rm, mkdir, chmod } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir, userInfo } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** OpenSSH is not installed (or not where we look): the message says which package to install. */
export class MissingOpenSshError extends Error {}

export const INSTALL_SERVER_HINT = 'install the openssh-server package (Debian/Ubuntu: sudo apt-get install openssh-server)';
export const INSTALL_CLIENT_HINT = 'install the openssh-client package (Debian/Ubuntu: sudo apt-get install openssh-client)';

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH, or undefined. */
export function findExecutable(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), ...extraDirs].filter((d) => d !== '');
  return dirs.map((dir) => path.join(dir, name)).find(isExecutable);
}

/** The sshd binary: $SSHD_BIN, else /usr/sbin/sshd, else sshd on PATH. Throws MissingOpenSshError. */
export function findSshd(): string {
  const explicit = process.env.SSHD_BIN;
  if (explicit !== undefined && explicit !== '') {
    if (isExecutable(explicit)) return explicit;
    throw new MissingOpenSshError(`sshd not found at ${explicit} (SSHD_BIN): ${INSTALL_SERVER_HINT}`);
  }
  if (isExecutable('/usr/sbin/sshd')) return '/usr/sbin/sshd';
  const onPath = findExecutable('sshd');
  if (onPath) return onPath;
  throw new MissingOpenSshError(`sshd not found (looked at /usr/sbin/sshd and on PATH): ${INSTALL_SERVER_HINT}`);
}

/** Checks that ssh and ssh-keygen exist. Throws MissingOpenSshError. */
export function requireOpenSshClient(): void {
  for (const tool of ['ssh', 'ssh-keygen']) {
    if (!findExecutable(tool)) throw new MissingOpenSshError(`${tool} not found on PATH: ${INSTALL_CLIENT_HINT}`);
  }
}

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
  const blob = Buffer.from(publicLine.split(/\s+/)[1] ?? '', 'base64');
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
  /** Reuse an existing client key (the key the gateway logs in with), else a new one is made. */
  clientKey?: KeyPair;
  port?: number;
  /** The device's folder (created; removed by stop()). Default: a new temp dir. */
  dir?: string;
  /** Start sshd in its own process group, so a terminal's Ctrl-C reaches only its owner, which then stops it. */
  ownProcessGroup?: boolean;
  /**
   * The shell that runs every command on this "device": `bash` (the login shell here, the default), `dash` or
   * `busybox` (ash). The other two run through a ForceCommand script, which also keeps SFTP working.
   */
  shell?: DeviceShell;
}

export type DeviceShell = 'bash' | 'dash' | 'busybox';

/** Where each device shell lives; a test for a shell that is missing should say which package to install. */
export const DEVICE_SHELLS: Readonly<Record<DeviceShell, { command: string; package: string }>> = {
  bash: { command: '/bin/bash -c', package: 'bash' },
  dash: { command: '/bin/dash -c', package: 'dash' },
  busybox: { command: '/bin/busybox sh -c', package: 'busybox' },
};

const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

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
    private readonly binary: string,
    private readonly ownProcessGroup: boolean,
  ) {}

  readonly host = '127.0.0.1';
  /** A non-root sshd can only log in the user it runs as; as root, that is root. */
  readonly user = userInfo().username;

  get hostKeyFingerprint(): string {
    return fingerprintOf(this.hostKey.publicLine);
  }

  /** The known_hosts line OpenSSH would write for this sshd. */
  get knownHostsLine(): string {
    const [type, blob] = this.hostKey.publicLine.split(/\s+/);
    return `[${this.host}]:${this.port} ${type} ${blob}`;
  }

  static async start(options: SshdOptions = {}): Promise<Sshd> {
    const binary = findSshd();
    let dir: string;
    if (options.dir !== undefined) {
      dir = options.dir;
      await mkdir(dir, { recursive: true });
    } else {
      dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-sshd-'));
    }
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
      // The folder lives under world-writable /tmp, which StrictModes would reject.
      'StrictModes no',
      'MaxStartups 100:30:200',
      'MaxSessions 10',
      'AllowTcpForwarding yes',
      ...(await shellLines(dir, options.shell ?? 'bash')),
      // A clean HOME so the login shell's rc files don't dominate every command.
      `SetEnv HOME=${home}`,
      'LogLevel VERBOSE',
      ...(options.extraConfig ?? []),
    ];
    await writeFile(configPath, config.join('\n') + '\n');
    // sshd's privilege-separation directory; only a root sshd needs (and may create) it.
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => undefined);
    const sshd = new Sshd(dir, port, hostKey, clientKey, home, configPath, binary, options.ownProcessGroup === true);
    await sshd.launch();
    return sshd;
  }

  async launch(): Promise<void> {
    const child = spawn(this.binary, ['-D', '-e', '-f', this.configPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: this.ownProcessGroup,
    });
    this.process = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.log += d.toString();
      if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
    });
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`sshd exited early (code ${code}):\n${this.log}`))),
    );
    exited.catch(() => undefined);
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

/**
 * sshd_config lines that make `shell` run every command. For bash nothing changes (the login shell is bash). For the
 * others a ForceCommand script hands SSH_ORIGINAL_COMMAND to that shell; ForceCommand applies to subsystems too, so
 * the script starts the sftp-server binary itself when that is what was asked for (internal-sftp can't be exec'd).
 */
async function shellLines(dir: string, shell: DeviceShell): Promise<string[]> {
  if (shell === 'bash') return ['Subsystem sftp internal-sftp'];
  const binary = DEVICE_SHELLS[shell].command.split(' ')[0]!;
  if (!isExecutable(binary)) throw new Error(`${binary} not found: install the ${DEVICE_SHELLS[shell].package} package to run a ${shell} device`);
  if (!isExecutable(SFTP_SERVER)) throw new Error(`${SFTP_SERVER} not found: install the openssh-sftp-server package`);
  const script = path.join(dir, `force-${shell}.sh`);
  await writeFile(
    script,
    [
      '#!/bin/sh',
      `if [ "$SSH_ORIGINAL_COMMAND" = ${SFTP_SERVER} ]; then exec ${SFTP_SERVER}; fi`,
      `exec ${DEVICE_SHELLS[shell].command} "$SSH_ORIGINAL_COMMAND"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return [`Subsystem sftp ${SFTP_SERVER}`, `ForceCommand ${script}`];
}

/** Every process below `pid`, found by walking `ps`'s parent links. */
export async function descendantsOf(pid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,ppid=']);
  const children = new Map<number, number[]>();
  for (const line of stdout.trim().split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    if (child === undefined || parent === undefined) continue;
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
