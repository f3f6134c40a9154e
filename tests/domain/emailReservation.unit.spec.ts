import { describe, it } from 'vitest';
import { DomainConflictError, DomainValidationError } from '../../src/domain/errors.js';
import { emailReservationDecider } from '../../src/domain/emailReservation.js';
import { deciderSpec } from './decider-spec.js';

const spec = deciderSpec(emailReservationDecider);
const now = '2025-01-02T03:04:05.000Z';
const emailNormalized = 'ada@example.com';
const reserved = { type: 'CustomerEmailReserved' as const, data: { emailNormalized, customerId: 'cus-1', at: now } };

describe('ReserveEmail', () => {
  it('reserves a free email', () => {
    spec.given([]).when({ type: 'ReserveEmail', data: { emailNormalized, customerId: 'cus-1', now } }).then([reserved]);
  });

  it('is an idempotent no-op for the same customer', () => {
    spec.given([reserved]).when({ type: 'ReserveEmail', data: { emailNormalized, customerId: 'cus-1', now } }).thenNothing();
  });

  it('refuses another customer with email_taken', () => {
    spec.given([reserved]).when({ type: 'ReserveEmail', data: { emailNormalized, customerId: 'cus-2', now } }).thenThrows('email_taken', DomainConflictError);
  });

  it.each(['Ada@example.com', ' ada@example.com', 'not-an-email'])('refuses an email that is not normalized or valid: %j', (email) => {
    spec.given([]).when({ type: 'ReserveEmail', data: { emailNormalized: email, customerId: 'cus-1', now } }).thenThrows('invalid_email', DomainValidationError);
  });
});
