/**
 * Typed domain errors. Each carries a stable snake_case `code` that clients may branch on and an
 * HTTP `status` so the API maps every error in one place. A plain `Error` thrown from the domain is
 * a bug (a broken invariant), never a business outcome.
 */
import type { JsonObject } from '../shared/json.js';

export type DomainErrorStatus = 400 | 404 | 409 | 422;

export type ValidationErrorCode =
  | 'invalid_amount'
  | 'too_many_decimals'
  | 'amount_must_be_positive'
  | 'amount_limit_exceeded'
  | 'unknown_currency'
  | 'invalid_email'
  | 'invalid_name'
  | 'invalid_id'
  | 'invalid_text'
  | 'invalid_timestamp'
  | 'invalid_overdraft_limit'
  | 'hold_expiry_in_past';

export type BusinessRuleCode =
  | 'insufficient_funds'
  | 'account_frozen'
  | 'account_closed'
  | 'currency_mismatch'
  | 'customer_not_active'
  | 'hold_not_found'
  | 'hold_expired'
  | 'hold_not_active'
  | 'capture_exceeds_hold'
  | 'balance_not_zero'
  | 'open_holds'
  | 'transfer_in_flight'
  | 'amount_limit_exceeded'
  | 'balance_limit_exceeded'
  | 'invalid_state_transition'
  | 'hold_already_exists'
  | 'already_exists'
  | 'same_account_transfer'
  | 'cross_currency_transfer';

export type ConflictCode = 'email_taken';

export type NotFoundCode = 'customer_not_found' | 'account_not_found' | 'transfer_not_found';

export type DomainErrorCode = ValidationErrorCode | BusinessRuleCode | ConflictCode | NotFoundCode;

export abstract class DomainError extends Error {
  abstract readonly status: DomainErrorStatus;
  readonly code: DomainErrorCode;
  readonly details: JsonObject | undefined;

  protected constructor(code: DomainErrorCode, message: string, details?: JsonObject) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/** The request itself is malformed; retrying it unchanged can never succeed. */
export class DomainValidationError extends DomainError {
  override name = 'DomainValidationError';
  readonly status = 400;
  declare readonly code: ValidationErrorCode;

  constructor(code: ValidationErrorCode, message: string, details?: JsonObject) {
    super(code, message, details);
  }
}

/** The request is well formed but the current state forbids it. */
export class BusinessRuleError extends DomainError {
  override name = 'BusinessRuleError';
  readonly status = 422;
  declare readonly code: BusinessRuleCode;

  constructor(code: BusinessRuleCode, message: string, details?: JsonObject) {
    super(code, message, details);
  }
}

/** Another aggregate already owns something this request wants (a unique email). */
export class DomainConflictError extends DomainError {
  override name = 'DomainConflictError';
  readonly status = 409;
  declare readonly code: ConflictCode;

  constructor(code: ConflictCode, message: string, details?: JsonObject) {
    super(code, message, details);
  }
}

/** A command other than a create targets a stream that has no state. */
export class NotFoundError extends DomainError {
  override name = 'NotFoundError';
  readonly status = 404;
  declare readonly code: NotFoundCode;

  constructor(code: NotFoundCode, message: string, details?: JsonObject) {
    super(code, message, details);
  }
}

export function isDomainError(error: unknown): error is DomainError {
  return error instanceof DomainError;
}
