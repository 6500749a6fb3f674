// Human approval through MCP elicitation (the 2026-07-28 multi-round-trip flow; the SDK shims it for 2025-era
// clients). The tool answers `input_required`; the client asks its human and retries the call with the answer.
// The approval is bound to the exact connection and command through a signed, single-use requestState, so an
// answer can never be replayed for another command.
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  acceptedContent,
  createRequestStateCodec,
  inputRequired,
  type CallToolResult,
  type McpServer,
  type ServerContext,
} from '@modelcontextprotocol/server';

const approvalSchema = z.object({
  approve: z.boolean().describe('Run it?'),
});

interface ApprovalState {
  subject: string;
  nonce: string;
}

const APPROVAL_KEY = 'approval';
const STATE_TTL_SECONDS = 600;

/** Thrown by the policy guard: the tool must return this input_required result instead of running anything. */
export class NeedsApproval extends Error {
  constructor(readonly result: CallToolResult) {
    super('needs human approval');
  }
}

export type ApprovalAnswer = 'granted' | 'declined' | 'none';

export class ApprovalDesk {
  // One process serves every round of a stdio flow; a per-process key is enough and never leaves memory.
  private readonly codec = createRequestStateCodec<ApprovalState>({
    key: randomBytes(32),
    ttlSeconds: STATE_TTL_SECONDS,
    // Over HTTP an approval answer is only good for the principal that was asked.
    bind: (ctx) => ctx.http?.authInfo?.clientId ?? 'stdio',
  });
  /** Answers already used, until their request state expires (after that the codec refuses them anyway). */
  private readonly usedNonces = new Map<string, number>();

  /** Server options that make the SDK verify echoed requestState before any handler runs. */
  get serverOptions(): { requestState: { verify: (state: string, ctx: ServerContext) => Promise<unknown> } } {
    return { requestState: { verify: (state, ctx) => this.codec.verify(state, ctx) } };
  }

  static subjectOf(connection: string, command: string): string {
    return createHash('sha256').update(`${connection}\0${command}`).digest('hex');
  }

  /** The human's answer carried by this (retried) request, if it is for exactly this subject and not used before. */
  answer(ctx: ServerContext, subject: string): ApprovalAnswer {
    const state = ctx.mcpReq.requestState<ApprovalState>();
    if (!state || typeof state !== 'object' || state.subject !== subject || this.usedNonces.has(state.nonce)) return 'none';
    const responses = ctx.mcpReq.inputResponses;
    if (!responses || !(APPROVAL_KEY in responses)) return 'none';
    this.rememberUsed(state.nonce);
    const content = acceptedContent<{ approve?: unknown }>(responses, APPROVAL_KEY);
    return content?.approve === true ? 'granted' : 'declined';
  }

  private rememberUsed(nonce: string): void {
    const now = Date.now();
    for (const [old, expires] of this.usedNonces) {
      if (expires > now) break; // insertion order is expiry order
      this.usedNonces.delete(old);
    }
    this.usedNonces.set(nonce, now + STATE_TTL_SECONDS * 1000);
  }

  async ask(ctx: ServerContext, subject: string, message: string): Promise<CallToolResult> {
    const requestState = await this.codec.mint({ subject, nonce: randomBytes(16).toString('hex') }, ctx);
    return inputRequired({
      inputRequests: { [APPROVAL_KEY]: inputRequired.elicit({ message, requestedSchema: approvalSchema }) },
      requestState,
    }) as unknown as CallToolResult;
  }
}

/** Whether the connected client told us it can ask its human (elicitation capability). */
export function clientCanElicit(server: McpServer, ctx: ServerContext): boolean {
  const fromEnvelope = (ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.['io.modelcontextprotocol/clientCapabilities'] as
    | { elicitation?: unknown }
    | undefined;
  return Boolean(fromEnvelope?.elicitation ?? server.server.getClientCapabilities()?.elicitation);
}
