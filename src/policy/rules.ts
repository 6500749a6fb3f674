// Structured policy rules: a command's shape written as argv with typed slots, the way sudoers and authorized_keys
// write permission, so an operator need not write a safe regex. The slots use the same types as action parameters
// (actions.ts, checkParamValue): one typed matcher serves both.
//
//   {"argv": ["systemctl", "status", {"type": "string", "pattern": "^[\\w@.][\\w@.-]*$"}]}
//   {"argv": ["tail", "-n", {"type": "integer", "min": 1, "max": 500}, {"type": "path", "roots": ["/var/log"]}]}
//   {"argv": ["reboot", {"type": "rest"}]}                        (deny: reboot with any arguments)
//
// A rule matches a simple command when the words line up one for one: a string slot is that exact word; a typed
// slot admits the word as an action parameter would be admitted (a string without a pattern never starts with
// `-`); `{"type": "rest"}`, last only, takes any further words. A command with `NAME=value` prefixes, or with a
// word the device's shell expands (an unquoted glob), never matches. Path slots are checked again on the device
// (symlinks followed) before the command runs. Redirections are judged as the two words [`>`, target] (with the
// fd: [`2>`, target]); file tools as [tool, path], e.g. ["read_file", {"type": "path", "roots": ["/var/log"]}].
import { z } from 'zod';
import { checkParamValue, describeSpec, paramSpecSchema, type ActionPath, type ParamSpec } from './actions.js';

const restSlotSchema = z.strictObject({
  type: z.literal('rest'),
  description: z.string().optional(),
});

export const argvSlotSchema = z.union([z.string(), restSlotSchema, paramSpecSchema]);

export const structuredRuleSchema = z
  .strictObject({
    argv: z.array(argvSlotSchema).min(1),
    description: z.string().optional(),
  })
  .superRefine((rule, ctx) => {
    rule.argv.forEach((slot, index) => {
      if (typeof slot === 'string') return;
      if (slot.type === 'rest' && index !== rule.argv.length - 1) {
        ctx.addIssue({ code: 'custom', path: ['argv', index], message: '{"type": "rest"} may only be the last slot' });
      }
      if ('default' in slot && slot.default !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['argv', index, 'default'], message: 'a rule slot has no default (the command gives every word)' });
      }
    });
  });

/** One entry of allow / deny / confirm: a regex source, or a structured rule. */
export const ruleSchema = z.union([z.string(), structuredRuleSchema]);

export type ArgvSlot = z.infer<typeof argvSlotSchema>;
export type StructuredRule = z.infer<typeof structuredRuleSchema>;
export type RuleSource = z.infer<typeof ruleSchema>;

/** What a rule is matched against: a simple command, a redirection, or a file tool's call, as words. */
export interface RuleSubject {
  readonly words: readonly { readonly value: string; readonly glob: boolean }[];
  readonly assignments: readonly string[];
}

export type StructuredMatch = { matched: true; paths: ActionPath[] } | { matched: false };

const NO_MATCH: StructuredMatch = { matched: false };

export function matchStructuredRule(rule: StructuredRule, subject: RuleSubject): StructuredMatch {
  if (subject.assignments.length > 0 || subject.words.some((w) => w.glob)) return NO_MATCH;
  const slots = rule.argv;
  const rest = slots.at(-1);
  const hasRest = typeof rest === 'object' && rest.type === 'rest';
  const fixed = hasRest ? slots.length - 1 : slots.length;
  if (hasRest ? subject.words.length < fixed : subject.words.length !== fixed) return NO_MATCH;
  const paths: ActionPath[] = [];
  for (let i = 0; i < fixed; i += 1) {
    const slot = slots[i]!;
    const word = subject.words[i]!.value;
    if (typeof slot === 'string') {
      if (slot !== word) return NO_MATCH;
      continue;
    }
    const spec = slot as ParamSpec;
    if ('error' in checkParamValue(`argv[${i}]`, spec, word)) return NO_MATCH;
    if (spec.type === 'path') paths.push({ param: `argv[${i}]`, value: word, roots: spec.roots });
  }
  return { matched: true, paths };
}

/** How a structured rule reads in messages: `systemctl status <string matching ^[\w@.][\w@.-]*$>`. */
export function describeStructuredRule(rule: StructuredRule): string {
  return rule.argv.map(describeSlot).join(' ');
}

function describeSlot(slot: ArgvSlot): string {
  if (typeof slot === 'string') return /^[A-Za-z0-9_@%+=:,./-]+$/.test(slot) ? slot : JSON.stringify(slot);
  if (slot.type === 'rest') return '<any further words>';
  return `<${describeSpec(slot as ParamSpec)}>`;
}

/** Advice for `check`: structured allow/confirm rules that admit more than their author may think. */
export function structuredRuleWarnings(rule: StructuredRule): string[] {
  const warnings: string[] = [];
  rule.argv.forEach((slot, index) => {
    if (typeof slot === 'string') return;
    if (slot.type === 'rest') warnings.push(`argv[${index}] {"type": "rest"} admits any further words, options included (-o, --output=...)`);
    if (slot.type === 'string' && slot.pattern !== undefined && admitsLeadingDash(slot.pattern)) {
      warnings.push(`argv[${index}]'s pattern ${JSON.stringify(slot.pattern)} admits a word starting with "-", which the program reads as an option; start the pattern with a class without "-", e.g. ^[\\w@.][\\w@.-]*$`);
    }
  });
  return warnings;
}

/** Probes a slot pattern with option-shaped words; a pattern that admits one would let the agent pass an option. */
function admitsLeadingDash(pattern: string): boolean {
  try {
    const whole = new RegExp(`^(?:${pattern})$`);
    return ['-', '-x', '--x', '-Hroot@h', '--output=/x', '-1'].some((probe) => whole.test(probe));
  } catch {
    return false;
  }
}
