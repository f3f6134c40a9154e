/**
 * Domain cost against an account's history (no I/O): CPU per transfer on the source account
 * (PlaceTransferHold then CaptureTransferHold, each decided and evolved, invariants included) as
 * the account's past transfers grow. The baseline is the same account's first transfers, in the
 * same process; a flat ratio means the cost does not grow with history.
 *
 *   npm run bench:domain -- [--transfers 40000] [--runs 3]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { decide, evolve, initialState, type AccountCommand, type AccountState } from '../src/domain/account.js';

const { values } = parseArgs({ options: { transfers: { type: 'string', default: '40000' }, runs: { type: 'string', default: '3' } } });
const TOTAL = Number(values.transfers);
const RUNS = Number(values.runs);
const STEPS = [1_000, 5_000, 10_000, 20_000, 40_000, 80_000].filter((step) => step <= TOTAL);

console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), node ${process.version}`);
const results = new Map<number, number[]>();
for (let run = 1; run <= RUNS; run++) {
  let state: AccountState = initialState();
  const now = new Date('2026-01-01T00:00:00.000Z').getTime();
  const at = (index: number) => new Date(now + index).toISOString();
  const apply = (command: AccountCommand) => {
    for (const event of decide(command, state)) state = evolve(state, event);
  };
  const accountId = 'source';
  apply({ type: 'OpenAccount', data: { accountId, customerId: 'c', customerStatus: 'active', currency: 'EUR', accountType: 'checking', overdraftLimitMinor: 0n, now: at(0) } });
  apply({ type: 'Deposit', data: { accountId, transactionId: 'funding', currency: 'EUR', amountMinor: 10n ** 15n, reference: null, description: null, now: at(0) } });
  const expiresAt = new Date(now + 365 * 24 * 3600_000).toISOString();
  let done = 0;
  for (const step of STEPS) {
    const started = performance.now();
    const from = done;
    for (; done < step; done++) {
      const transferId = `transfer-${done}`;
      apply({ type: 'PlaceTransferHold', data: { accountId, transferId, currency: 'EUR', amountMinor: 1n, expiresAt, now: at(done) } });
      apply({ type: 'CaptureTransferHold', data: { accountId, transferId, toAccountId: 'destination', now: at(done) } });
    }
    const perTransferUs = ((performance.now() - started) * 1000) / (step - from);
    results.set(step, [...(results.get(step) ?? []), perTransferUs]);
  }
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
const baseline = median(results.get(STEPS[0]!)!);
console.log(`\nmedian of ${RUNS} runs\n\n| past transfers on the account | µs per transfer (2 commands) | vs the first ${STEPS[0]!.toLocaleString('en')} |\n|--:|--:|--:|`);
let previous = 0;
for (const step of STEPS) {
  const value = median(results.get(step)!);
  console.log(`| ${previous.toLocaleString('en')}–${step.toLocaleString('en')} | ${value.toFixed(1)} | ${(value / baseline).toFixed(2)} |`);
  previous = step;
}
