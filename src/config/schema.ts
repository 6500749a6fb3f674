// The one source of truth for connections.json: validation, types and the published JSON Schema all come from here.
import { z } from 'zod';
import { actionSchema } from '../policy/actions.js';
import { ruleSchema } from '../policy/rules.js';

const fingerprint = z
  .string()
  .regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, 'expected an OpenSSH SHA256 fingerprint like "SHA256:AbC…" (43 base64 characters), as printed by `ssh-keygen -lf`');

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. "127.0.0.1:2222" or "[::1]:2222"');

export const policySchema = z
  .object({
    allow: z.array(ruleSchema).optional().describe('Rules (structured {"argv": [...]} or regexes); with an allow list, every simple command must match one of them.'),
    deny: z.array(ruleSchema).optional().describe('Rules (structured {"argv": [...]} or regexes); a simple command matching any of them is refused (deny wins).'),
    confirm: z.array(ruleSchema).optional().describe('Rules (structured {"argv": [...]} or regexes); a simple command matching any of them needs a human to approve it.'),
    read_only: z.boolean().optional().describe('Refuse write_file, upload_file and redirections that write.'),
  })
  .strict();

export const timeoutsSchema = z
  .object({
    connect_s: z.number().positive().max(600).optional().describe('TCP + SSH handshake limit (default 15).'),
    command_s: z.number().positive().max(86_400).optional().describe('Default run_command timeout (default 60).'),
    idle_s: z.number().nonnegative().optional().describe('Close a warm connection unused this long (default 300; 0 = never).'),
    keepalive_s: z.number().positive().optional().describe('SSH keepalive interval (default 15); 3 missed answers drop the connection.'),
  })
  .strict();

export const retrySchema = z
  .object({
    attempts: z.number().int().min(1).max(20).optional().describe('Connection attempts per call (default 2). Commands are never retried.'),
    backoff_ms: z.number().int().nonnegative().optional().describe('Base backoff between attempts, with jitter (default 250).'),
    failure_threshold: z.number().int().min(1).optional().describe('Consecutive failures that open the circuit (default 5).'),
    cooldown_s: z.number().positive().optional().describe('How long an open circuit fails fast before one probe (default 30).'),
  })
  .strict();

const connectionName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'use letters, digits, ".", "_" and "-" (it is also the tunnel login name)');

export const connectionSchema = z
  .object({
    name: connectionName,
    mode: z.enum(['direct', 'tunnel']).describe('direct: the gateway dials the device; tunnel: the device dials in with ssh -R.'),
    user: z.string().min(1).regex(/^[^\s@:]+$/, 'a login name without spaces, "@" or ":"'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65_535).default(22),
    id_file: z.string().min(1).describe('Private key the gateway authenticates to the device with.'),
    passphrase_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
    passphrase_file: z.string().optional(),
    agent: z.boolean().optional().describe('Also offer keys from the operator ssh-agent (SSH_AUTH_SOCK).'),
    host_key: z.union([fingerprint, z.array(fingerprint).min(1)]).optional(),
    known_hosts: z.string().optional(),
    tags: z.array(z.string().min(1)).optional(),
    policy: policySchema.optional(),
    actions: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/), actionSchema).optional(),
    timeouts: timeoutsSchema.optional(),
    retry: retrySchema.optional(),
    max_sessions: z.number().int().min(1).max(100).optional().describe('Concurrent commands on one connection (default 8; sshd MaxSessions is 10).'),
    edge_public_key: z.string().optional().describe('tunnel: the public key (file or inline OpenSSH line) the device logs in with.'),
    bind_loopback: z.boolean().optional().describe('tunnel: also listen on 127.0.0.1:<port> for plain OpenSSH tools.'),
  })
  .strict();

export const httpSchema = z
  .object({
    listen: hostPort.optional(),
    tokens: z
      .array(
        z
          .object({
            name: z.string().min(1),
            token_env: z.string().optional(),
            token_file: z.string().optional(),
            token_sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();

export const gatewaySchema = z
  .object({
    tunnel_listen: hostPort.optional(),
    tunnel_host_key: z.string().optional(),
    audit_log: z.string().optional(),
    audit_fsync: z.enum(['always', 'never']).optional().describe('fsync each audit record before answering (default always).'),
    audit_max_bytes: z.number().int().min(4096).optional().describe('Rotate the audit log at this size (default 64 MiB); verification spans rotated files.'),
    audit_keep: z.number().int().min(1).max(1000).optional().describe('Rotated audit files kept (default 10).'),
    http: httpSchema.optional(),
    max_output_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).optional(),
    default_policy: policySchema.optional(),
    known_hosts: z.string().optional(),
    staging_dir: z.string().optional(),
    timeouts: timeoutsSchema.optional(),
    retry: retrySchema.optional(),
  })
  .strict();

export const fullConfigSchema = z
  .object({
    $schema: z.string().optional(),
    gateway: gatewaySchema.default({}),
    connections: z.array(connectionSchema),
  })
  .strict();

/** Both accepted forms: the original array of connections, or `{ gateway, connections }`. */
export const configFileSchema = z.union([z.array(connectionSchema), fullConfigSchema]);

export type PolicyConfig = z.infer<typeof policySchema>;
export type ConnectionConfig = z.infer<typeof connectionSchema>;
export type GatewayConfig = z.infer<typeof gatewaySchema>;
export type TimeoutsConfig = z.infer<typeof timeoutsSchema>;
export type RetryConfig = z.infer<typeof retrySchema>;
