/**
 * Double entry. Every money-moving event carries `legs` that sum to zero, so the sum of all
 * balances in one currency, across customer, settlement and clearing accounts, is always zero.
 *
 * Glossary:
 * - leg: one signed posting to one ledger account; positive credits it, negative debits it.
 * - settlement account: the bank's cash; a deposit debits it and credits the customer.
 * - clearing account: money in flight between the two halves of a transfer.
 * - trial balance: per currency, per ledger account, the sum of every leg ever posted.
 */
export type Leg = { ledgerAccount: string; amountMinor: bigint };

export type LedgerAccount = string;

/** Per currency, per ledger account, the running sum of legs. */
export type TrialBalance = Map<string, Map<LedgerAccount, bigint>>;

/** Bounds a single posting; events in this domain post two legs. */
const LEGS_PER_POSTING_MAX = 16;

export function customerLedgerAccount(accountId: string): LedgerAccount {
  return `customer:${accountId}`;
}

export function settlementLedgerAccount(currency: string): LedgerAccount {
  return `settlement:${currency}`;
}

export function clearingLedgerAccount(currency: string): LedgerAccount {
  return `clearing:${currency}`;
}

/** What is wrong with a posting, or null when its legs form a valid balanced posting. */
export function postingProblem(legs: readonly Leg[]): string | null {
  if (legs.length < 2) return `a posting needs at least 2 legs, got ${legs.length}`;
  if (legs.length > LEGS_PER_POSTING_MAX) return `a posting has at most ${LEGS_PER_POSTING_MAX} legs, got ${legs.length}`;
  let sumMinor = 0n;
  for (const leg of legs) {
    if (typeof leg !== 'object' || leg === null) return 'a leg is not an object';
    if (typeof leg.amountMinor !== 'bigint') return `leg for ${leg.ledgerAccount} has a non-bigint amount`;
    if (leg.amountMinor === 0n) return `leg for ${leg.ledgerAccount} is zero`;
    if (typeof leg.ledgerAccount !== 'string' || leg.ledgerAccount.length === 0) return 'leg has no ledger account';
    sumMinor += leg.amountMinor;
  }
  return sumMinor === 0n ? null : `legs do not balance: they sum to ${sumMinor}`;
}

/** Programmer-error check: throws a plain Error unless the legs form a valid balanced posting. */
export function assertBalanced(legs: readonly Leg[]): void {
  const problem = postingProblem(legs);
  if (problem !== null) throw new Error(problem);
}

export function createTrialBalance(): TrialBalance {
  return new Map();
}

/** Adds a balanced posting to the trial balance in place. */
export function postLegs(trial: TrialBalance, currency: string, legs: readonly Leg[]): void {
  assertBalanced(legs);
  addLegs(trial, currency, legs);
}

function addLegs(trial: TrialBalance, currency: string, legs: readonly Leg[]): void {
  let accounts = trial.get(currency);
  if (accounts === undefined) {
    accounts = new Map();
    trial.set(currency, accounts);
  }
  for (const leg of legs) accounts.set(leg.ledgerAccount, (accounts.get(leg.ledgerAccount) ?? 0n) + leg.amountMinor);
}

/** The postings an event carries, or null when it moves no money. */
export function postingOf(event: { type: string; data: unknown }): { currency: string; legs: Leg[] } | null {
  const data = event.data;
  if (typeof data !== 'object' || data === null) return null;
  const { currency, legs } = data as { currency?: unknown; legs?: unknown };
  if (typeof currency !== 'string' || !Array.isArray(legs)) return null;
  return { currency, legs: legs as Leg[] };
}

/** Folds any log of events (domain events or stored ones with revived bigints) into a trial balance. */
export function trialBalance(events: Iterable<{ type: string; data: unknown }>, trial: TrialBalance = createTrialBalance()): TrialBalance {
  for (const event of events) {
    const posting = postingOf(event);
    if (posting !== null) postLegs(trial, posting.currency, posting.legs);
  }
  return trial;
}

/** A stored event whose posting breaks the rules: the write side never records one, so an audit reports it. */
export type PostingException = { position: bigint; eventId: string; streamName: string; type: string; problem: string };

/** A trial balance taken by an auditor: totals, plus the events whose postings are not valid. */
export type TrialBalanceAudit = { trial: TrialBalance; exceptions: PostingException[]; exceptionCount: number; postingEventTypes: ReadonlySet<string> };

/** Exceptions listed in full; past this many only the count grows. */
export const POSTING_EXCEPTIONS_LISTED_MAX = 100;

/** `postingEventTypes`: the event types that always post; one of them without a valid posting is an exception too. */
export function createTrialBalanceAudit(postingEventTypes: Iterable<string>): TrialBalanceAudit {
  return { trial: createTrialBalance(), exceptions: [], exceptionCount: 0, postingEventTypes: new Set(postingEventTypes) };
}

/**
 * Folds stored events into an audit without trusting them: an invalid posting is reported, not
 * thrown, and its well-formed legs are still summed, so the totals show how far off the books are.
 */
export function auditPostings(
  events: Iterable<{ position: bigint; id: string; streamName: string; type: string; data: unknown }>,
  audit: TrialBalanceAudit,
): TrialBalanceAudit {
  for (const event of events) {
    const posting = postingOf(event);
    if (posting === null) {
      const carriesLegs = typeof event.data === 'object' && event.data !== null && 'legs' in event.data;
      if (audit.postingEventTypes.has(event.type) || carriesLegs) reportException(audit, event, 'no valid posting: its currency or legs are missing or malformed');
      continue;
    }
    const problem = postingProblem(posting.legs);
    if (problem === null) {
      postLegs(audit.trial, posting.currency, posting.legs);
      continue;
    }
    reportException(audit, event, problem);
    addLegs(audit.trial, posting.currency, posting.legs.filter((leg) => typeof leg?.amountMinor === 'bigint' && typeof leg.ledgerAccount === 'string' && leg.ledgerAccount.length > 0));
  }
  return audit;
}

function reportException(audit: TrialBalanceAudit, event: { position: bigint; id: string; streamName: string; type: string }, problem: string): void {
  audit.exceptionCount += 1;
  if (audit.exceptions.length < POSTING_EXCEPTIONS_LISTED_MAX) {
    audit.exceptions.push({ position: event.position, eventId: event.id, streamName: event.streamName, type: event.type, problem });
  }
}

/** Balanced: every currency sums to zero and no event's posting broke the rules. */
export function isAuditBalanced(audit: TrialBalanceAudit): boolean {
  return audit.exceptionCount === 0 && isTrialBalanceZero(audit.trial);
}

export function ledgerAccountBalance(trial: TrialBalance, currency: string, ledgerAccount: LedgerAccount): bigint {
  return trial.get(currency)?.get(ledgerAccount) ?? 0n;
}

/** Per currency, the sum over all ledger accounts. Every entry is 0n in a healthy ledger. */
export function trialBalanceTotals(trial: TrialBalance): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const [currency, accounts] of trial) {
    let sumMinor = 0n;
    for (const balanceMinor of accounts.values()) sumMinor += balanceMinor;
    totals.set(currency, sumMinor);
  }
  return totals;
}

export function isTrialBalanceZero(trial: TrialBalance): boolean {
  for (const sumMinor of trialBalanceTotals(trial).values()) if (sumMinor !== 0n) return false;
  return true;
}

export function assertTrialBalanceZero(trial: TrialBalance): void {
  for (const [currency, sumMinor] of trialBalanceTotals(trial)) {
    if (sumMinor !== 0n) throw new Error(`trial balance for ${currency} is off by ${sumMinor}`);
  }
}
