// The running gateway: the loaded config, one DeviceConnection per device, the tunnel server when any
// connection uses it, and the audit sink. MCP tools call into this; nothing here knows about MCP.
import { setMaxListeners } from 'node:events';
import type { Duplex } from 'node:stream';
import type { LoadedConfig, ResolvedConnection } from '../config/load.js';
import { DeviceConnection, type ConnectionHealth } from '../ssh/connection.js';
import { defaultKnownHostsFiles } from '../ssh/host-keys.js';
import { GatewayError } from '../errors.js';
import { logger } from '../util/log.js';
import { RefusalBudget, shortenAsked } from '../audit/refusals.js';

/**
 * Refusal records each principal may cause per window before they are only counted: room for a person's burst of
 * denied attempts (a policy test table), ~100 KiB a minute at most once refusal records are shortened.
 */
const REFUSALS_PER_WINDOW = 100;
const REFUSAL_WINDOW_MS = 60_000;

export interface AuditSink {
  append(event: { event: string; [field: string]: unknown }, options?: { durable?: boolean }): Promise<unknown>;
  sync?(): Promise<void>;
  close?(): Promise<void>;
}

export interface TunnelInfo {
  up: boolean;
  since?: string;
  peer?: string;
  last_down?: string;
  last_down_reason?: string;
}

/** What the gateway needs from a tunnel server; the embedded SSH server provides it. */
export interface TunnelProvider {
  status(name: string): TunnelInfo;
  openStream(name: string): Promise<Duplex>;
}

export interface ConnectionView extends ConnectionHealth {
  name: string;
  mode: 'direct' | 'tunnel';
  user: string;
  host: string;
  port: number;
  tags: string[];
  tunnel: (TunnelInfo & { setup_hint?: string }) | null;
  policy: 'none' | 'custom';
  actions: string[];
}

export class Gateway {
  readonly connections = new Map<string, DeviceConnection>();
  private readonly shutdown = abortControllerForMany();
  private readonly inFlight = new Set<Promise<unknown>>();
  private tunnels?: TunnelProvider;
  /** Refusals an agent can repeat at will: a budget per principal, so they can't rotate the log away (refusals.ts). */
  private readonly refusals = new RefusalBudget(REFUSALS_PER_WINDOW, REFUSAL_WINDOW_MS, (summary) =>
    void this.record({ event: 'refusals_suppressed', client: summary.principal, counts: summary.counts, window_s: summary.window_s }).catch(() => undefined),
  );

  constructor(
    readonly config: LoadedConfig,
    readonly audit: AuditSink,
  ) {
    const fallbackKnownHosts = config.gateway.known_hosts ? [config.gateway.known_hosts] : defaultKnownHostsFiles();
    for (const c of config.connections) {
      this.connections.set(
        c.name,
        new DeviceConnection(c, {
          fallbackKnownHosts,
          openTunnelStream: (name) => this.openTunnelStream(name),
          defaults: { ...config.gateway.timeouts, ...config.gateway.retry },
          // record() already logs a failed write; a rejection here must not become an unhandled one that kills the process.
          onEvent: (event) => void this.record(event).catch(() => undefined),
        }),
      );
    }
  }

  attachTunnels(tunnels: TunnelProvider): void {
    this.tunnels = tunnels;
  }

  private openTunnelStream(name: string): Promise<Duplex> {
    if (!this.tunnels) return Promise.reject(new Error(`the tunnel server is not running, so "${name}" cannot be reached`));
    return this.tunnels.openStream(name);
  }

  /**
   * Audit first. `durable: false` returns once the record is written to the OS (it survives a gateway crash);
   * `syncAudit()` or the next durable record makes it reach the disk. An audit failure is logged loudly.
   */
  async record(event: { event: string; [field: string]: unknown }, options?: { durable?: boolean }): Promise<void> {
    if (!this.refusals.admit(event)) return; // over its principal's refusal budget: counted in the next summary
    try {
      await this.audit.append(shortenAsked(event), options);
    } catch (err) {
      logger.error(`audit log write failed for event ${event.event}: ${(err as Error).message}`);
      throw err;
    }
  }

  /** Everything recorded so far is on disk when this resolves. */
  async syncAudit(): Promise<void> {
    await this.audit.sync?.();
  }

  connection(name: string): DeviceConnection {
    const found = this.connections.get(name);
    if (found) return found;
    const known = [...this.connections.keys()];
    throw new GatewayError(
      'unknown_connection',
      `unknown connection "${name}". Known connections: ${known.length > 0 ? known.join(', ') : '(none configured)'}. Call list_connections to see them with their state.`,
    );
  }

  view(c: ResolvedConnection): ConnectionView {
    const device = this.connection(c.name);
    const tunnel = c.mode === 'tunnel' ? this.tunnelInfo(c) : null;
    return {
      name: c.name,
      mode: c.mode,
      user: c.user,
      host: c.host,
      port: c.port,
      tags: c.tags ?? [],
      ...device.health(tunnel?.up),
      tunnel,
      policy: c.effectivePolicy ? 'custom' : 'none',
      actions: Object.keys(c.actions ?? {}),
    };
  }

  private tunnelInfo(c: ResolvedConnection): TunnelInfo & { setup_hint?: string } {
    const info = this.tunnels?.status(c.name) ?? { up: false };
    if (!c.edgePublicKeyLine) {
      return { ...info, setup_hint: `no edge_public_key configured: add "edge_public_key": "<the device's ssh-ed25519 public key line>" to connection "${c.name}", then run edge-setup ${c.name}` };
    }
    return info;
  }

  listConnections(tag?: string): ConnectionView[] {
    return this.config.connections.filter((c) => !tag || (c.tags ?? []).includes(tag)).map((c) => this.view(c));
  }

  /** Aborted when the gateway stops: running commands are stopped (and killed on their devices). */
  get stopping(): AbortSignal {
    return this.shutdown.signal;
  }

  /** Keeps count of a running command so close() can wait for it to be stopped and audited. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const forget = (): void => void this.inFlight.delete(work);
    work.then(forget, forget);
    return work;
  }

  async close(): Promise<void> {
    this.shutdown.abort();
    this.refusals.flush(); // what was held back is summarised before the log closes
    // Give stopped commands time to be killed on their devices and to record command_end (kill grace is 2 s).
    const settled = Promise.allSettled([...this.inFlight]);
    await Promise.race([settled, new Promise((r) => setTimeout(r, 8000).unref())]);
    await Promise.all([...this.connections.values()].map((connection) => connection.close()));
  }
}

/** Every running command listens on the gateway's shutdown signal: many at once is expected, not a leak. */
function abortControllerForMany(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
