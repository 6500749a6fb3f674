// Building tool results: structured data plus a short text summary, or a gateway-level error the agent can act on.
import type { CallToolResult } from '@modelcontextprotocol/server';
import { GatewayError, errorMessage } from '../errors.js';

export function toolResult(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

export function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}

/** Gateway failures become isError results; anything unexpected is reported without a stack trace. */
export function errorResult(err: unknown): CallToolResult {
  if (err instanceof GatewayError) return toolError(err.message);
  return toolError(`gateway error: ${errorMessage(err)}`);
}
