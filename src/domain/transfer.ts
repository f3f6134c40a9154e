/**
 * A money transfer between two accounts of one currency, as the process manager drives it.
 *
 * The transfer stream records the request and the outcome: `TransferRequested`, then
 * `TransferCompleted`, or `TransferCompensationStarted` and `TransferFailed`. The steps between
 * are recorded where the money is, each at most once per transfer (the account decides the first
 * outcome and ignores repeats):
 * - reserved: the source account holds the amount (`HoldPlaced`, holdId = transferId), or refused
 *   it (`TransferHoldRejected`);
 * - credited: the destination was credited from the per-currency clearing account
 *   (`TransferCredited`), or refused it (`TransferCreditRejected`). Once credited the transfer can
 *   only complete: the hold is captured into clearing (`HoldCaptured`);
 * - compensating: the credit was refused, so the hold is being released.
 * - deadline: a transfer not reserved and credited by then is fenced and failed (see
 *   docs/architecture.md, "Transfers").
 *
 * `TransferFundsReserved` and `TransferDestinationCredited` (statuses `reserved` and `credited`)
 * were recorded by the first version of the process manager, which copied those two account
 * outcomes onto the transfer stream: two appends more per transfer on the critical path. Streams
 * that hold them still fold and still finish.
 */
import type { Decider } from './decider.js';
import { assertNever } from './decider.js';
import { BusinessRuleError, DomainValidationError, NotFoundError } from './errors.js';
import { MAX_AMOUNT_MINOR, type CurrencyCode, assertCurrency } from './money.js';
import { assertId, optionalText, DESCRIPTION_LENGTH_MAX } from './text.js';
import { parseInstantMs } from './time.js';

export type TransferFailureReason =
  | 'insufficient_funds'
  | 'account_frozen'
  | 'account_closed'
  | 'currency_mismatch'
  | 'amount_limit_exceeded'
  | 'balance_limit_exceeded'
  | 'deadline_exceeded'
  | 'hold_expired';

// ---------------------------------------------------------------- Commands

export type RequestTransfer = {
  type: 'RequestTransfer';
  data: {
    transferId: string;
    fromAccountId: string;
    toAccountId: string;
    currency: CurrencyCode;
    amountMinor: bigint;
    description: string | null;
    deadlineAt: string;
    holdExpiresAt: string;
    now: string;
  };
};
export type StartCompensation = { type: 'StartCompensation'; data: { transferId: string; reason: TransferFailureReason; now: string } };
export type CompleteTransfer = { type: 'CompleteTransfer'; data: { transferId: string; now: string } };
export type FailTransfer = { type: 'FailTransfer'; data: { transferId: string; reason: TransferFailureReason; now: string } };

export type TransferCommand = RequestTransfer | StartCompensation | CompleteTransfer | FailTransfer;

// ---------------------------------------------------------------- Events

export type TransferFacts = { transferId: string; fromAccountId: string; toAccountId: string; currency: CurrencyCode; amountMinor: bigint };

export type TransferRequested = {
  type: 'TransferRequested';
  data: TransferFacts & { description: string | null; deadlineAt: string; holdExpiresAt: string; at: string };
};
/** Recorded by the first version of the process manager only (see the top of this file). */
export type TransferFundsReserved = { type: 'TransferFundsReserved'; data: TransferFacts & { at: string } };
/** Recorded by the first version of the process manager only (see the top of this file). */
export type TransferDestinationCredited = { type: 'TransferDestinationCredited'; data: TransferFacts & { at: string } };
export type TransferCompensationStarted = { type: 'TransferCompensationStarted'; data: TransferFacts & { reason: TransferFailureReason; at: string } };
export type TransferCompleted = { type: 'TransferCompleted'; data: TransferFacts & { at: string } };
export type TransferFailed = { type: 'TransferFailed'; data: TransferFacts & { reason: TransferFailureReason; at: string } };

export type TransferEvent = TransferRequested | TransferFundsReserved | TransferDestinationCredited | TransferCompensationStarted | TransferCompleted | TransferFailed;
export type TransferEventType = TransferEvent['type'];

const TRANSFER_EVENT_TYPES: Record<TransferEventType, true> = {
  TransferRequested: true,
  TransferFundsReserved: true,
  TransferDestinationCredited: true,
  TransferCompensationStarted: true,
  TransferCompleted: true,
  TransferFailed: true,
};
export const transferStreamEventTypes: readonly TransferEventType[] = Object.freeze(Object.keys(TRANSFER_EVENT_TYPES) as TransferEventType[]);

export function isTransferEvent(event: { type: string }): event is TransferEvent {
  return Object.hasOwn(TRANSFER_EVENT_TYPES, event.type);
}

// ---------------------------------------------------------------- State

export type TransferStatus = 'requested' | 'reserved' | 'credited' | 'compensating' | 'completed' | 'failed';

export type TransferState =
  | { status: 'none' }
  | (TransferFacts & { status: TransferStatus; deadlineAt: string; holdExpiresAt: string; reason: TransferFailureReason | null });

export function initialState(): TransferState {
  return { status: 'none' };
}

export function isTerminal(state: TransferState): boolean {
  return state.status === 'completed' || state.status === 'failed';
}

// ---------------------------------------------------------------- Decide

export function decide(command: TransferCommand, state: TransferState): TransferEvent[] {
  const now = command.data.now;
  parseInstantMs(now, 'now');
  if (command.type === 'RequestTransfer') return request(command, state);
  if (state.status === 'none') throw new NotFoundError('transfer_not_found', 'no such transfer');
  const facts: TransferFacts = { transferId: state.transferId, fromAccountId: state.fromAccountId, toAccountId: state.toAccountId, currency: state.currency, amountMinor: state.amountMinor };
  // Each step is recorded once; a repeat or a step that lost a race to a terminal state changes nothing.
  // `requested` is in flight: the account streams hold how far (the process manager reacts to them).
  switch (command.type) {
    case 'StartCompensation':
      return state.status === 'requested' || state.status === 'reserved'
        ? [{ type: 'TransferCompensationStarted', data: { ...facts, reason: command.data.reason, at: now } }]
        : [];
    case 'CompleteTransfer':
      return state.status === 'compensating' || isTerminal(state) ? [] : [{ type: 'TransferCompleted', data: { ...facts, at: now } }];
    case 'FailTransfer':
      if (state.status === 'credited') throw new BusinessRuleError('invalid_state_transition', 'a credited transfer can only complete');
      return isTerminal(state) ? [] : [{ type: 'TransferFailed', data: { ...facts, reason: state.reason ?? command.data.reason, at: now } }];
    default:
      return assertNever(command, 'transfer command');
  }
}

function request(command: RequestTransfer, state: TransferState): TransferEvent[] {
  const { transferId, fromAccountId, toAccountId, currency, amountMinor, deadlineAt, holdExpiresAt, now } = command.data;
  if (state.status !== 'none') throw new BusinessRuleError('already_exists', 'this transfer already exists');
  assertId(transferId, 'transferId');
  assertId(fromAccountId, 'fromAccountId');
  assertId(toAccountId, 'toAccountId');
  assertCurrency(currency);
  if (fromAccountId === toAccountId) throw new BusinessRuleError('same_account_transfer', 'a transfer needs two different accounts');
  if (amountMinor <= 0n) throw new DomainValidationError('amount_must_be_positive', 'amount must be positive');
  if (amountMinor > MAX_AMOUNT_MINOR) throw new DomainValidationError('amount_limit_exceeded', 'amount exceeds the per-movement maximum');
  const nowMs = parseInstantMs(now, 'now');
  if (parseInstantMs(deadlineAt, 'deadlineAt') <= nowMs || parseInstantMs(holdExpiresAt, 'holdExpiresAt') <= parseInstantMs(deadlineAt, 'deadlineAt')) {
    throw new DomainValidationError('invalid_timestamp', 'the deadline must be after now and the hold expiry after the deadline');
  }
  const description = optionalText(command.data.description, 'description', DESCRIPTION_LENGTH_MAX);
  return [{ type: 'TransferRequested', data: { transferId, fromAccountId, toAccountId, currency, amountMinor, description, deadlineAt, holdExpiresAt, at: now } }];
}

// ---------------------------------------------------------------- Evolve

const NEXT_STATUS: Record<Exclude<TransferEventType, 'TransferRequested'>, { from: readonly TransferStatus[]; to: TransferStatus }> = {
  TransferFundsReserved: { from: ['requested'], to: 'reserved' },
  TransferDestinationCredited: { from: ['reserved'], to: 'credited' },
  TransferCompensationStarted: { from: ['requested', 'reserved'], to: 'compensating' },
  TransferCompleted: { from: ['requested', 'reserved', 'credited'], to: 'completed' },
  TransferFailed: { from: ['requested', 'reserved', 'compensating'], to: 'failed' },
};

export function evolve(state: TransferState, event: TransferEvent): TransferState {
  if (event.type === 'TransferRequested') {
    if (state.status !== 'none') throw new Error('TransferRequested on an existing transfer');
    const { transferId, fromAccountId, toAccountId, currency, amountMinor, deadlineAt, holdExpiresAt } = event.data;
    return { status: 'requested', transferId, fromAccountId, toAccountId, currency, amountMinor, deadlineAt, holdExpiresAt, reason: null };
  }
  if (state.status === 'none') throw new Error(`${event.type} before TransferRequested`);
  const step = NEXT_STATUS[event.type];
  if (!step.from.includes(state.status)) throw new Error(`${event.type} in status ${state.status}`);
  const reason = event.type === 'TransferCompensationStarted' || event.type === 'TransferFailed' ? event.data.reason : state.reason;
  return { ...state, status: step.to, reason };
}

export const transferDecider: Decider<TransferState, TransferCommand, TransferEvent> = { decide, evolve, initialState };
