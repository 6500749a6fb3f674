/** Bad command-line usage: exit 2 with a pointer to --help. */
export class UsageError extends Error {}

/** A failure with a chosen exit code and a message for the operator. */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}
