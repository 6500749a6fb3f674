// The audit plane: a tamper-evident, redacted, hash-chained JSON-lines log.
export {
  AuditLog,
  AuditLogError,
  DEFAULT_KEEP,
  DEFAULT_MAX_BYTES,
  GENESIS_HASH,
  RESERVED_FIELDS,
  canonicalJson,
  computeRecordHash,
  readLastRecord,
  type AuditEvent,
  type AuditLogOptions,
  type AuditRecord,
} from './log.js';
export { REDACTED, redactFields, redactText } from './redact.js';
export {
  auditFilesOldestFirst,
  readAuditRecords,
  verifyAuditFiles,
  type AuditHistoryFilter,
  type ChainAnchor,
  type VerifyResult,
} from './verify.js';
