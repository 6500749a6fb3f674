// Refusals are the one kind of record an agent can cause as fast and as large as it likes: a denied 60 KiB command
// costs it nothing, and each wrote two 60 KiB records (~20 MB/s), enough to rotate the whole default retention away
// in under a minute and take the records that matter with it. So, in the audit layer, keyed on event names:
// - a refusal record keeps the start of each long field plus its size and sha256 (what was refused stays provable);
// - each principal (the `client` field) gets a budget of refusal records per window; beyond it they are counted
//   and summarised once per window (NoiseBudget, as for tunnel and HTTP refusals);
// - a tool_call record (the call as asked, before any decision) keeps long fields the same short way: what then
//   ran is in command_start / approval_granted / file_transfer, which are never shortened beyond the 64 KiB rule.
// Records of what ran and of approvals granted never pass through here.

import { canonicalJson } from './log.js';
import type { AuditEvent } from './log.js';
import { NoiseBudget, type NoiseSummary } from './noise.js';
import { abbreviate } from './redact.js';

/** Records of something refused, which the caller can repeat at will. */
export const REFUSAL_EVENTS: ReadonlySet<string> = new Set(['policy_denial', 'approval_refused', 'action_rejected']);
/** Records of a call as asked; shortened like refusals, never held back. */
const SHORTENED_EVENTS: ReadonlySet<string> = new Set([...REFUSAL_EVENTS, 'tool_call']);

/** A field longer than this (characters of text, or of canonical JSON for objects) is shortened... */
export const SHORT_FIELD_MAX = 1024;
/** ...to this many characters of its start, plus its size and sha256. */
const SHORT_FIELD_KEEP = 256;

/** The event to record, with long fields shortened if it is a refusal or a tool call; other events unchanged. */
export function shortenAsked(event: AuditEvent): AuditEvent {
  if (!SHORTENED_EVENTS.has(event.event)) return event;
  // fromEntries, not `obj[name] =`, so a "__proto__" field stays a plain field
  return Object.fromEntries(Object.entries(event).map(([name, value]) => [name, name === 'event' ? value : shortenField(value)])) as AuditEvent;
}

function shortenField(value: unknown): unknown {
  if (typeof value === 'string') return value.length > SHORT_FIELD_MAX ? abbreviate(value, SHORT_FIELD_KEEP) : value;
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value; // buffers: redaction summarises them
  const json = canonicalJson(value);
  return json.length > SHORT_FIELD_MAX ? abbreviate(json, SHORT_FIELD_KEEP) : value;
}

/** Who a record is about: the HTTP principal, else the transport (stdio has one principal), from `client`. */
export function principalOf(client: unknown): string {
  if (typeof client === 'string') return client;
  if (client !== null && typeof client === 'object') {
    const { principal, transport } = client as { principal?: unknown; transport?: unknown };
    if (typeof principal === 'string') return `http:${principal}`;
    if (typeof transport === 'string') return transport;
  }
  return 'unattributed';
}

export interface RefusalSummary {
  principal: string;
  counts: Record<string, number>;
  window_s: number;
}

/** Most principals tracked at once; beyond it they share one budget (principals come from config: a few). */
const MAX_PRINCIPALS = 256;
const SHARED = 'other principals';

/** Per-principal budgets for refusal records. */
export class RefusalBudget {
  private readonly budgets = new Map<string, NoiseBudget>();

  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
    private readonly onSummary: (summary: RefusalSummary) => void,
  ) {}

  /** True when `event` may be recorded; false when it was a refusal over its principal's budget (counted instead). */
  admit(event: AuditEvent): boolean {
    if (!REFUSAL_EVENTS.has(event.event)) return true;
    return this.budgetOf(principalOf(event.client)).admit(event.event, '');
  }

  /** Reports every principal's held-back refusals now (before the log closes). */
  flush(): void {
    for (const budget of this.budgets.values()) budget.flush();
  }

  private budgetOf(principal: string): NoiseBudget {
    const key = this.budgets.has(principal) || this.budgets.size < MAX_PRINCIPALS ? principal : SHARED;
    let budget = this.budgets.get(key);
    if (!budget) {
      budget = new NoiseBudget(this.perWindow, this.windowMs, ({ counts, window_s }: NoiseSummary) => this.onSummary({ principal: key, counts, window_s }));
      this.budgets.set(key, budget);
    }
    return budget;
  }
}
