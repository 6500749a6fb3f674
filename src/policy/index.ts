// The policy plane: what may run on a device (policy.ts), how a command line is read (shell.ts), and
// operator-defined actions (actions.ts). Pure logic: no SSH, no MCP.
export {
  evaluateCommand,
  evaluateFileAccess,
  normalizeRemotePath,
  fileAccessSubject,
  FILE_OP_SUBJECT,
  MAX_REMOTE_PATH_BYTES,
  compilePolicy,
  policyWarnings,
  checkCommandInput,
  MAX_COMMAND_BYTES,
  type Policy,
  type CompiledPolicy,
  type CompiledRule,
  type PolicyDecision,
  type FileOp,
  type NormalizedPath,
  type PolicyRule,
} from './policy.js';
export { ruleSchema, structuredRuleSchema, matchStructuredRule, describeStructuredRule, type StructuredRule, type ArgvSlot } from './rules.js';
export { nestedScriptsOf } from './nested.js';
export { parseCommandLine, shellQuote, type ShellParse, type SimpleCommand, type Redirection, type CommandWord } from './shell.js';
export {
  actionSchema,
  paramSpecSchema,
  renderAction,
  resolvedPathProblem,
  validateActionTemplate,
  describeActions,
  type ActionConfig,
  type ActionPath,
  type ParamSpec,
  type RenderResult,
} from './actions.js';
