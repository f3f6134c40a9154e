import type { AccountCommand, AccountEvent, AccountState } from '../../src/domain/account.js';
import { accountDecider } from '../../src/domain/account.js';
import { deciderSpec } from './decider-spec.js';

export const spec = deciderSpec(accountDecider);

export const accountId = 'acc-1';
export const otherAccountId = 'acc-2';
export const customerId = 'cus-1';
export const T0 = '2025-01-01T00:00:00.000Z';
export const T1 = '2025-01-01T01:00:00.000Z';
export const T2 = '2025-01-01T02:00:00.000Z';
export const T3 = '2025-01-01T03:00:00.000Z';

type DataOf<Type extends AccountCommand['type']> = Extract<AccountCommand, { type: Type }>['data'];
type Overrides<Type extends AccountCommand['type']> = Partial<DataOf<Type>>;

function command<Type extends AccountCommand['type']>(type: Type, data: Omit<DataOf<Type>, 'accountId' | 'now'>, overrides: Overrides<Type> = {}) {
  return { type, data: { accountId, now: T0, ...data, ...overrides } } as Extract<AccountCommand, { type: Type }>;
}

export const cmd = {
  open: (o: Overrides<'OpenAccount'> = {}) =>
    command('OpenAccount', { customerId, customerStatus: 'active', currency: 'EUR', accountType: 'checking', overdraftLimitMinor: 0n }, o),
  freeze: (o: Overrides<'FreezeAccount'> = {}) => command('FreezeAccount', {}, o),
  unfreeze: (o: Overrides<'UnfreezeAccount'> = {}) => command('UnfreezeAccount', {}, o),
  close: (o: Overrides<'CloseAccount'> = {}) => command('CloseAccount', {}, o),
  setOverdraft: (overdraftLimitMinor: bigint, o: Overrides<'SetOverdraftLimit'> = {}) => command('SetOverdraftLimit', { overdraftLimitMinor }, o),
  deposit: (amountMinor: bigint, o: Overrides<'Deposit'> = {}) =>
    command('Deposit', { transactionId: `dep-${amountMinor}`, currency: 'EUR', amountMinor, reference: null, description: null }, o),
  withdraw: (amountMinor: bigint, o: Overrides<'Withdraw'> = {}) =>
    command('Withdraw', { transactionId: `wd-${amountMinor}`, currency: 'EUR', amountMinor, reference: null, description: null }, o),
  placeHold: (holdId: string, amountMinor: bigint, o: Overrides<'PlaceHold'> = {}) =>
    command('PlaceHold', { holdId, currency: 'EUR', amountMinor, expiresAt: T2, reference: null, description: null }, o),
  captureHold: (holdId: string, o: Overrides<'CaptureHold'> = {}) => command('CaptureHold', { holdId }, o),
  releaseHold: (holdId: string, o: Overrides<'ReleaseHold'> = {}) => command('ReleaseHold', { holdId }, o),
  expireHold: (holdId: string, o: Overrides<'ExpireHold'> = {}) => command('ExpireHold', { holdId }, { now: T2, ...o }),
  placeTransferHold: (transferId: string, amountMinor: bigint, o: Overrides<'PlaceTransferHold'> = {}) =>
    command('PlaceTransferHold', { transferId, currency: 'EUR', amountMinor, expiresAt: T2 }, o),
  rejectTransferHold: (transferId: string, o: Overrides<'RejectTransferHold'> = {}) =>
    command('RejectTransferHold', { transferId, currency: 'EUR', amountMinor: 100n, reason: 'insufficient_funds' }, o),
  creditTransfer: (transferId: string, amountMinor: bigint, o: Overrides<'CreditTransfer'> = {}) =>
    command('CreditTransfer', { transferId, fromAccountId: otherAccountId, currency: 'EUR', amountMinor, description: null }, o),
  rejectTransferCredit: (transferId: string, o: Overrides<'RejectTransferCredit'> = {}) =>
    command('RejectTransferCredit', { transferId, fromAccountId: otherAccountId, currency: 'EUR', amountMinor: 100n, reason: 'account_closed' }, o),
  captureTransferHold: (transferId: string, o: Overrides<'CaptureTransferHold'> = {}) => command('CaptureTransferHold', { transferId, toAccountId: otherAccountId }, o),
  releaseTransferHold: (transferId: string, o: Overrides<'ReleaseTransferHold'> = {}) => command('ReleaseTransferHold', { transferId }, o),
};

/** Runs commands through decide + evolve and returns the events, so givens stay short and real. */
export function history(...commands: AccountCommand[]): AccountEvent[] {
  let state: AccountState = accountDecider.initialState();
  const events: AccountEvent[] = [];
  for (const command of commands) {
    for (const event of accountDecider.decide(command, state)) {
      state = accountDecider.evolve(state, event);
      events.push(event);
    }
  }
  return events;
}

export function stateOf(events: AccountEvent[]): AccountState {
  return events.reduce(accountDecider.evolve, accountDecider.initialState());
}

export function depositLegs(amountMinor: bigint, id = accountId) {
  return [
    { ledgerAccount: `customer:${id}`, amountMinor },
    { ledgerAccount: 'settlement:EUR', amountMinor: -amountMinor },
  ];
}
