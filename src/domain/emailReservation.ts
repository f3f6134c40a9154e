/**
 * Email uniqueness. One stream per normalized email; the first customer to reserve it owns it.
 * The write side reserves the email before it registers the customer, so a retry of the same
 * registration finds its own reservation and carries on.
 */
import type { Decider } from './decider.js';
import { assertNever } from './decider.js';
import { DomainConflictError, DomainValidationError } from './errors.js';
import { normalizeEmail, validateEmail } from './customer.js';
import { assertId } from './text.js';
import { parseInstantMs } from './time.js';

export type ReserveEmail = { type: 'ReserveEmail'; data: { emailNormalized: string; customerId: string; now: string } };
export type EmailReservationCommand = ReserveEmail;

export type CustomerEmailReserved = { type: 'CustomerEmailReserved'; data: { emailNormalized: string; customerId: string; at: string } };
export type EmailReservationEvent = CustomerEmailReserved;
export type EmailReservationEventType = EmailReservationEvent['type'];
export const emailReservationEventTypes: readonly EmailReservationEventType[] = Object.freeze(['CustomerEmailReserved'] as const);

export type EmailReservationState = { status: 'none' } | { status: 'reserved'; emailNormalized: string; customerId: string; reservedAt: string };

export function initialState(): EmailReservationState {
  return { status: 'none' };
}

export function decide(command: EmailReservationCommand, state: EmailReservationState): EmailReservationEvent[] {
  switch (command.type) {
    case 'ReserveEmail': {
      const { emailNormalized, customerId, now } = command.data;
      assertId(customerId, 'customerId');
      parseInstantMs(now, 'now');
      if (normalizeEmail(validateEmail(emailNormalized)) !== emailNormalized) {
        throw new DomainValidationError('invalid_email', 'emailNormalized must already be trimmed and lowercased');
      }
      if (state.status === 'none') return [{ type: 'CustomerEmailReserved', data: { emailNormalized, customerId, at: now } }];
      if (state.customerId === customerId) return [];
      throw new DomainConflictError('email_taken', 'this email is already registered');
    }
    default:
      return assertNever(command.type, 'email reservation command');
  }
}

export function evolve(state: EmailReservationState, event: EmailReservationEvent): EmailReservationState {
  switch (event.type) {
    case 'CustomerEmailReserved':
      if (state.status !== 'none') throw new Error('CustomerEmailReserved on an email that is already reserved');
      return { status: 'reserved', emailNormalized: event.data.emailNormalized, customerId: event.data.customerId, reservedAt: event.data.at };
    default:
      return assertNever(event.type, 'email reservation event');
  }
}

export const emailReservationDecider: Decider<EmailReservationState, EmailReservationCommand, EmailReservationEvent> = { decide, evolve, initialState };
