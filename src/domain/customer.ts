/**
 * Customer lifecycle.
 *
 * Glossary:
 * - pending_verification: registered, identity not yet verified; may not open accounts.
 * - active: verified; may open and use accounts.
 * - suspended: temporarily barred by the bank; reactivation returns the customer to active.
 * - emailNormalized: trimmed, lowercased email; the key for the uniqueness reservation.
 */
import type { Decider } from './decider.js';
import { assertNever } from './decider.js';
import { BusinessRuleError, DomainValidationError, NotFoundError } from './errors.js';
import { assertId, hasControlCharacter, optionalText } from './text.js';
import { parseInstantMs } from './time.js';

export const EMAIL_LENGTH_MAX = 254;
export const EMAIL_LOCAL_PART_LENGTH_MAX = 64;
export const NAME_LENGTH_MAX = 100;
export const SUSPENSION_REASON_LENGTH_MAX = 500;

// local@domain.tld: RFC 5322 "atext" local part, LDH domain labels, alphabetic TLD of 2+ letters.
const EMAIL_PATTERN =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;

// ---------------------------------------------------------------- Commands

export type RegisterCustomer = {
  type: 'RegisterCustomer';
  data: { customerId: string; email: string; firstName: string; lastName: string; now: string };
};
export type ActivateCustomer = { type: 'ActivateCustomer'; data: { customerId: string; now: string } };
export type SuspendCustomer = { type: 'SuspendCustomer'; data: { customerId: string; reason?: string | null; now: string } };
export type ReactivateCustomer = { type: 'ReactivateCustomer'; data: { customerId: string; now: string } };

export type CustomerCommand = RegisterCustomer | ActivateCustomer | SuspendCustomer | ReactivateCustomer;

// ---------------------------------------------------------------- Events

export type CustomerRegistered = {
  type: 'CustomerRegistered';
  data: { customerId: string; email: string; emailNormalized: string; firstName: string; lastName: string; at: string };
};
export type CustomerActivated = { type: 'CustomerActivated'; data: { customerId: string; at: string } };
export type CustomerSuspended = { type: 'CustomerSuspended'; data: { customerId: string; reason: string | null; at: string } };
export type CustomerReactivated = { type: 'CustomerReactivated'; data: { customerId: string; at: string } };

export type CustomerEvent = CustomerRegistered | CustomerActivated | CustomerSuspended | CustomerReactivated;
export type CustomerEventType = CustomerEvent['type'];

const CUSTOMER_EVENT_TYPES: Record<CustomerEventType, true> = {
  CustomerRegistered: true,
  CustomerActivated: true,
  CustomerSuspended: true,
  CustomerReactivated: true,
};
export const customerEventTypes: readonly CustomerEventType[] = Object.freeze(Object.keys(CUSTOMER_EVENT_TYPES) as CustomerEventType[]);

export function isCustomerEvent(event: { type: string }): event is CustomerEvent {
  return Object.hasOwn(CUSTOMER_EVENT_TYPES, event.type);
}

// ---------------------------------------------------------------- State

export type CustomerStatus = 'pending_verification' | 'active' | 'suspended';

export type RegisteredCustomer = {
  status: CustomerStatus;
  customerId: string;
  email: string;
  emailNormalized: string;
  firstName: string;
  lastName: string;
  registeredAt: string;
};

export type CustomerState = { status: 'none' } | RegisteredCustomer;

export function initialState(): CustomerState {
  return { status: 'none' };
}

// ---------------------------------------------------------------- Validation

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Returns the trimmed email or throws DomainValidationError `invalid_email`. */
export function validateEmail(email: string): string {
  const trimmed = typeof email === 'string' ? email.trim() : '';
  const localPart = trimmed.slice(0, trimmed.lastIndexOf('@'));
  if (trimmed.length === 0 || trimmed.length > EMAIL_LENGTH_MAX || localPart.length > EMAIL_LOCAL_PART_LENGTH_MAX || !EMAIL_PATTERN.test(trimmed)) {
    throw new DomainValidationError('invalid_email', 'email must look like local@domain.tld and be at most 254 characters');
  }
  return trimmed;
}

/** Returns the trimmed name or throws DomainValidationError `invalid_name`. */
export function validateName(name: string, field: string): string {
  const trimmed = typeof name === 'string' ? name.trim() : '';
  if (trimmed.length === 0 || trimmed.length > NAME_LENGTH_MAX || hasControlCharacter(trimmed)) {
    throw new DomainValidationError('invalid_name', `${field} must be 1..${NAME_LENGTH_MAX} characters without control characters`, { field });
  }
  return trimmed;
}

// ---------------------------------------------------------------- Decide

export function decide(command: CustomerCommand, state: CustomerState): CustomerEvent[] {
  assertId(command.data.customerId, 'customerId');
  parseInstantMs(command.data.now, 'now');
  if (state.status !== 'none' && state.customerId !== command.data.customerId) {
    throw new Error(`command for customer ${command.data.customerId} was given the state of customer ${state.customerId}`);
  }
  switch (command.type) {
    case 'RegisterCustomer':
      return register(command, state);
    case 'ActivateCustomer':
      return transition(state, 'pending_verification', 'activate', () => ({
        type: 'CustomerActivated',
        data: { customerId: command.data.customerId, at: command.data.now },
      }));
    case 'SuspendCustomer': {
      const reason = optionalText(command.data.reason, 'reason', SUSPENSION_REASON_LENGTH_MAX);
      return transition(state, 'active', 'suspend', () => ({
        type: 'CustomerSuspended',
        data: { customerId: command.data.customerId, reason, at: command.data.now },
      }));
    }
    case 'ReactivateCustomer':
      return transition(state, 'suspended', 'reactivate', () => ({
        type: 'CustomerReactivated',
        data: { customerId: command.data.customerId, at: command.data.now },
      }));
    default:
      return assertNever(command, 'customer command');
  }
}

function register(command: RegisterCustomer, state: CustomerState): CustomerEvent[] {
  const email = validateEmail(command.data.email);
  const firstName = validateName(command.data.firstName, 'firstName');
  const lastName = validateName(command.data.lastName, 'lastName');
  if (state.status !== 'none') throw new BusinessRuleError('already_exists', `customer ${command.data.customerId} already exists`);
  return [
    {
      type: 'CustomerRegistered',
      data: { customerId: command.data.customerId, email, emailNormalized: normalizeEmail(email), firstName, lastName, at: command.data.now },
    },
  ];
}

function transition(state: CustomerState, from: CustomerStatus, action: string, event: () => CustomerEvent): CustomerEvent[] {
  if (state.status === 'none') throw new NotFoundError('customer_not_found', 'customer not found');
  if (state.status !== from) {
    throw new BusinessRuleError('invalid_state_transition', `cannot ${action} a customer that is ${state.status}`, { status: state.status });
  }
  return [event()];
}

// ---------------------------------------------------------------- Evolve

export function evolve(state: CustomerState, event: CustomerEvent): CustomerState {
  switch (event.type) {
    case 'CustomerRegistered': {
      if (state.status !== 'none') throw new Error(`CustomerRegistered on a customer that is ${state.status}`);
      const { customerId, email, emailNormalized, firstName, lastName, at } = event.data;
      return { status: 'pending_verification', customerId, email, emailNormalized, firstName, lastName, registeredAt: at };
    }
    case 'CustomerActivated':
    case 'CustomerReactivated':
      return withStatus(state, 'active', event.type);
    case 'CustomerSuspended':
      return withStatus(state, 'suspended', event.type);
    default:
      return assertNever(event, 'customer event');
  }
}

function withStatus(state: CustomerState, status: CustomerStatus, eventType: CustomerEventType): CustomerState {
  if (state.status === 'none') throw new Error(`${eventType} on a customer that does not exist`);
  return { ...state, status };
}

export const customerDecider: Decider<CustomerState, CustomerCommand, CustomerEvent> = { decide, evolve, initialState };
