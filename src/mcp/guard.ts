// The policy step of every command-running tool: MCP tool → policy (here) → connection → SSH → audit.
// Deny and refuse with the rule and what is allowed instead; ask a human for `confirm`; let the rest through.
import type { McpServer, ServerContext } from '@modelcontextprotocol/server';
import type { Gateway } from '../gateway/gateway.js';
import { GatewayError } from '../errors.js';
import { evaluateCommand, evaluateFileAccess, fileAccessSubject, normalizeRemotePath, type FileOp, type PolicyDecision } from '../policy/index.js';
import { ApprovalDesk, NeedsApproval, clientCanElicit } from './approval.js';
import { pathEscape } from '../gateway/device-paths.js';
import type { CallerIdentity } from './context.js';

export interface AuthorizeRequest {
  connection: string;
  /** The exact command line that would run. */
  command: string;
  ctx: ServerContext;
  who: CallerIdentity;
  /** Actions: operator-written templates skip the pattern lists; `confirm: true` on the action still asks a human. */
  action?: { name: string; confirm: boolean };
  /** Working directory: under a policy it is refused, since the patterns judge relative paths as written. */
  cwd?: string;
  /** Environment for the command: under a policy it is refused, since PATH, LD_PRELOAD, BASH_ENV... change what runs. */
  env?: Record<string, string>;
  /** Tools that cannot carry an approval round (fan-out) refuse confirm commands instead of asking. */
  canAsk?: boolean;
  /** A decision already made for `command` (file tools: evaluateFileAccess); skips command evaluation. */
  decided?: PolicyDecision;
  /**
   * What else a human approves along with `command` (file tools: which tool, the content's size and sha256, the
   * mode, the local file): shown in the question and part of what the approval is bound to.
   */
  detail?: string;
}

export type Authorizer = (request: AuthorizeRequest) => Promise<void>;

function alternatives(gateway: Gateway, connection: string): string {
  const actions = Object.entries(gateway.connection(connection).config.actions ?? {});
  if (actions.length === 0) return 'Ask the operator to allow it in the connection\'s policy, or to add an action for it.';
  return `Allowed instead: run_action with ${actions.map(([name, a]) => `"${name}" (${a.description})`).join(', ')}.`;
}

export function makeAuthorizer(gateway: Gateway, server: McpServer, desk: ApprovalDesk): Authorizer {
  return async ({ connection, command, ctx, who, action, env, cwd, canAsk = true, decided, detail }) => {
    const device = gateway.connection(connection);
    if (device.config.effectivePolicy && cwd !== undefined && cwd !== '/') {
      await gateway.record({ event: 'policy_denial', connection, command, cwd, client: who, rule: 'cwd', reason: 'cwd under a policy' });
      throw new GatewayError(
        'policy_denied',
        `refused: "${connection}" has a policy, and its patterns judge the command's paths as written; a working directory (${cwd}) would change what relative paths reach. Use absolute paths instead of cwd. Nothing was run.`,
      );
    }
    if (device.config.effectivePolicy && env && Object.keys(env).length > 0) {
      await gateway.record({ event: 'policy_denial', connection, command, client: who, rule: 'env', reason: 'env under a policy' });
      throw new GatewayError(
        'policy_denied',
        `refused: "${connection}" has a policy, and environment variables (${Object.keys(env).join(', ')}) could change what the command runs (PATH, LD_PRELOAD, BASH_ENV...). Put values in the command line where the policy can see them, or use an action. Nothing was run.`,
      );
    }
    const decision: PolicyDecision =
      decided ??
      (action
        ? action.confirm
          ? { decision: 'confirm', rule: `action ${action.name}`, reason: `action "${action.name}" is marked confirm: true` }
          : { decision: 'allow' }
        : device.config.effectivePolicy
          ? await evaluateCommand(command, device.config.effectivePolicy)
          : { decision: 'allow' });
    const base = { connection, command, action: action?.name, client: who };

    if (decision.decision !== 'deny' && decision.paths !== undefined) {
      // A structured rule admitted these paths by their text; the device must agree once it follows symlinks.
      const escape = await pathEscape(gateway, connection, decision.paths, ctx.mcpReq.signal);
      if (escape) {
        await gateway.record({ event: 'policy_denial', ...base, rule: 'path', reason: escape });
        throw new GatewayError('policy_denied', `refused by the policy of "${connection}": ${escape}. Nothing was run; name a path whose real location is under the allowed roots.`);
      }
    }
    if (decision.decision === 'allow') return;
    if (decision.decision === 'deny') {
      await gateway.record({ event: 'policy_denial', ...base, rule: decision.rule, reason: decision.reason });
      throw new GatewayError('policy_denied', `refused by the policy of "${connection}" (${decision.rule}): ${decision.reason} Nothing was run. ${alternatives(gateway, connection)}`);
    }

    const subject = ApprovalDesk.subjectOf(connection, detail === undefined ? command : `${command}\n${detail}`);
    // A tool that can't ask (fan-out) doesn't take an approval given to another tool either.
    const answer = canAsk ? desk.answer(ctx, subject) : 'none';
    if (answer === 'granted') {
      await gateway.record({ event: 'approval_granted', ...base, rule: decision.rule });
      return;
    }
    if (answer === 'declined') {
      await gateway.record({ event: 'approval_refused', ...base, rule: decision.rule, reason: 'declined by the human' });
      throw new GatewayError('policy_denied', `a human declined to run this on "${connection}" (${decision.rule}). Nothing was run. Do not retry it unchanged; ask the human what they want instead.`);
    }
    if (!canAsk || !clientCanElicit(server, ctx)) {
      const why = !canAsk
        ? 'this tool cannot ask for approval per device'
        : who.transport === 'http' && who.era === 'legacy'
          ? 'this client speaks the 2025 MCP protocol over stateless HTTP, where the gateway cannot ask its human (use a client that speaks the 2026-07-28 protocol, or stdio)'
          : 'this MCP client cannot ask its human (it did not declare elicitation support)';
      await gateway.record({ event: 'approval_refused', ...base, rule: decision.rule, reason: why });
      throw new GatewayError(
        'policy_denied',
        `this needs a human's approval on "${connection}" (${decision.reason}), but ${why}, so it was refused. Nothing was run. ${canAsk ? 'Use a client that supports elicitation, or ask the operator to run it.' : 'Run it per device with run_command so each can be approved.'}`,
      );
    }
    await gateway.record({ event: 'approval_asked', ...base, rule: decision.rule, reason: decision.reason });
    const message =
      `The agent wants to run on "${connection}" (${device.config.user}@${device.config.host}):\n\n${command}\n${detail === undefined ? '' : `(${detail})\n`}\n` +
      `It needs your approval because ${decision.reason} (${decision.rule}). Approve?`;
    throw new NeedsApproval(await desk.ask(ctx, subject, message));
  };
}

export interface FileAuthorizeRequest {
  connection: string;
  /** read: read_file, download_file; write: write_file, upload_file; list: list_directory. */
  op: FileOp;
  /** The remote path as the agent gave it. */
  path: string;
  ctx: ServerContext;
  who: CallerIdentity;
  /** See AuthorizeRequest.detail. */
  detail?: string;
}

/**
 * The policy step of the file tools, before anything reaches the device: normalizes the remote path, decides
 * `<tool> <path>` with evaluateFileAccess (see policy.ts for the mapping), and refuses, lets through or asks a
 * human exactly as for commands. Returns the normalized path: the one that was judged is the one to use.
 */
export async function authorizeFile(authorize: Authorizer, gateway: Gateway, request: FileAuthorizeRequest): Promise<string> {
  const device = gateway.connection(request.connection);
  const normalized = normalizeRemotePath(request.path);
  if (!normalized.ok) throw new GatewayError('bad_input', `${normalized.reason} Nothing was touched on "${request.connection}".`);
  if (request.op === 'write' && /\/\.?$/.test(request.path)) {
    // Normalizing would drop it, and write a file where a folder was meant.
    throw new GatewayError('bad_input', `${request.path} ends with "/", so it names a folder; give the path of the file to write. Nothing was touched on "${request.connection}".`);
  }
  const decided = evaluateFileAccess(request.op, normalized.path, device.config.effectivePolicy);
  const command = fileAccessSubject(request.op, normalized.path);
  await authorize({ connection: request.connection, command, ctx: request.ctx, who: request.who, decided, detail: request.detail });
  return normalized.path;
}

/**
 * The second look, once the device has resolved symlinks: the path really touched (`resolved`) must be allowed
 * outright, so `/var/log/link -> /etc/shadow` can't borrow the permission of `/var/log/`. A human's approval
 * covered the path they saw, so a resolved path that needs approval is refused with the path to ask for.
 */
export async function authorizeResolvedFile(
  gateway: Gateway,
  request: Omit<FileAuthorizeRequest, 'ctx'> & { resolved: string },
): Promise<void> {
  const { connection, op, path, resolved, who } = request;
  const policy = gateway.connection(connection).config.effectivePolicy;
  if (!policy || resolved === path) return;
  const decision = evaluateFileAccess(op, resolved, policy);
  if (decision.decision === 'allow') return;
  const command = fileAccessSubject(op, path);
  await gateway.record({ event: 'policy_denial', connection, command, resolved, client: who, rule: decision.rule, reason: decision.reason });
  const why = decision.decision === 'deny' ? decision.reason : `it needs a human's approval (${decision.rule})`;
  throw new GatewayError(
    'policy_denied',
    `refused by the policy of "${connection}": ${path} resolves through a symlink on the device to ${resolved}, and ${why} Nothing was touched. ` +
      `Call the tool with ${resolved} itself if that is the file you mean.`,
  );
}
