import { once } from 'node:events';
import type { Kysely } from 'kysely';
import type { Runtime } from '../runtime.js';
import { assertValidStreamName, MAX_PAGE_SIZE } from '../eventstore/port.js';
import { projectionStatuses } from '../projections/checkpoints.js';
import { ProjectionBusyError, rebuildProjection, type RebuildProgress } from '../projections/rebuild.js';
import { PROJECTIONS, projectionNamed } from '../projections/registry.js';
import { clearingLedgerAccount, isAuditBalanced, trialBalanceTotals } from '../domain/ledger.js';
import { auditLog } from '../read/audit/trialBalance.js';
import { auditEventView } from '../read/audit/eventView.js';

/** `ledger projections status`: each projection's checkpoint, lag and failure. */
export async function printProjectionStatus(runtime: Runtime): Promise<void> {
  const statuses = await projectionStatuses(runtime.db as unknown as Kysely<unknown>, runtime.store, PROJECTIONS);
  const rows = statuses.map((status) => ({
    projection: status.name,
    position: status.position.toString(),
    'lag events': status.lagEvents === null ? '?' : String(status.lagEvents),
    'lag s': status.lagSeconds.toFixed(1),
    state: status.failingEventId ? `failing at event ${status.failingEventId}` : 'ok',
  }));
  console.table(rows);
}

/**
 * `ledger projections rebuild [name]` and `ledger audit verify [name]`. Returns the rows found
 * different. A projection that another rebuild or verify holds is skipped and the others still run;
 * the command then fails, naming it.
 */
export async function rebuildOrVerify(runtime: Runtime, mode: 'rebuild' | 'verify', name?: string): Promise<number> {
  const projections = name ? [projectionNamed(name)] : PROJECTIONS;
  let differences = 0;
  const refusals: string[] = [];
  for (const projection of projections) {
    const report = progressReporter(mode, projection.name);
    let result;
    try {
      result = await rebuildProjection(runtime.db as unknown as Kysely<unknown>, runtime.store, projection, mode, report.update);
    } catch (error) {
      if (!(error instanceof ProjectionBusyError)) throw error;
      runtime.logger.error({ projection: projection.name }, error.message);
      refusals.push(error.message);
      continue;
    } finally {
      report.done();
    }
    const rate = result.elapsedMs > 0 ? Math.round((result.events / result.elapsedMs) * 1000) : result.events;
    if (mode === 'verify') {
      differences += result.differences ?? 0;
      runtime.logger.info({ projection: projection.name, events: result.events, position: result.position.toString(), differences: result.differences, eventsPerSecond: rate }, result.differences ? 'read model differs from the log' : 'read model matches the log');
      // The comparison is at the live checkpoint: say so when that is not the log's head.
      const [live] = await projectionStatuses(runtime.db as unknown as Kysely<unknown>, runtime.store, [projection]);
      if (live && (live.failingEventId !== null || (live.lagEvents ?? 0) > 0)) {
        runtime.logger.warn(
          { projection: projection.name, position: live.position.toString(), lagEvents: live.lagEvents, lagSeconds: live.lagSeconds, failingEventId: live.failingEventId, failingError: live.failingError },
          live.failingEventId !== null ? 'verified only up to its checkpoint: the live projection is stopped at a failing event' : 'verified only up to its checkpoint: the live projection is behind the log',
        );
      }
    } else {
      runtime.logger.info({ projection: projection.name, events: result.events, position: result.position.toString(), elapsedMs: result.elapsedMs, eventsPerSecond: rate }, 'projection rebuilt and swapped in');
    }
  }
  if (refusals.length > 0) throw new Error(refusals.join('; '));
  return differences;
}

/** A progress bar on a terminal (events/s, ETA); plain log lines otherwise. */
function progressReporter(mode: string, projection: string) {
  const started = Date.now();
  let lastLogMs = 0;
  const tty = process.stderr.isTTY === true;
  return {
    update(progress: RebuildProgress) {
      const elapsedSeconds = (Date.now() - started) / 1000;
      const rate = elapsedSeconds > 0 ? progress.events / elapsedSeconds : 0;
      if (tty) {
        process.stderr.write(`\r${mode} ${projection}: ${progress.events} events, ${Math.round(rate)}/s   `);
      } else if (Date.now() - lastLogMs > 2_000) {
        lastLogMs = Date.now();
        process.stderr.write(`${JSON.stringify({ mode, projection, events: progress.events, eventsPerSecond: Math.round(rate) })}\n`);
      }
    },
    done() {
      if (tty) process.stderr.write('\n');
    },
  };
}

/** `ledger audit trial-balance`: the sum of every leg in the log, per currency; zero or it fails. */
export async function printTrialBalance(runtime: Runtime): Promise<boolean> {
  const { audit, events } = await auditLog(runtime.store);
  const { trial } = audit;
  process.stdout.write(`events\t${events}\ncurrency\tsum of legs\tclearing (money in flight)\tverdict\n`);
  for (const [currency, total] of trialBalanceTotals(trial)) {
    const clearing = trial.get(currency)?.get(clearingLedgerAccount(currency)) ?? 0n;
    process.stdout.write(`${currency}\t${total.toString()}\t${clearing.toString()}\t${total === 0n ? 'balanced' : 'NOT BALANCED'}\n`);
  }
  if (audit.exceptionCount > 0) {
    process.stdout.write(`invalid postings\t${audit.exceptionCount}\nposition\tevent id\tstream\ttype\tproblem\n`);
    for (const { position, eventId, streamName, type, problem } of audit.exceptions) process.stdout.write(`${position}\t${eventId}\t${streamName}\t${type}\t${problem}\n`);
  }
  return isAuditBalanced(audit);
}

/**
 * `ledger audit replay STREAM`: the stream's events as JSON lines, in the audit API's form (bigints
 * as decimal strings). Returns how many there were: none is told apart by the caller.
 */
export async function printStream(runtime: Runtime, streamName: string, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  assertValidStreamName(streamName);
  // A reader that goes away (`| head`) ends the listing quietly; any other output error is thrown.
  let failed: NodeJS.ErrnoException | undefined;
  const onError = (error: NodeJS.ErrnoException) => {
    failed ??= error;
  };
  out.on('error', onError);
  try {
    let fromRevision = 0n;
    let printed = 0;
    while (!failed) {
      const page = await runtime.store.readStream(streamName, { fromRevision, maxCount: MAX_PAGE_SIZE });
      // One write a page, waiting for the pipe to drain: a reader slower than the store holds memory to one page.
      if (page.length > 0 && !out.write(page.map((event) => `${JSON.stringify(auditEventView(event))}\n`).join(''))) {
        await once(out, 'drain').catch(onError);
      }
      printed += page.length;
      if (page.length < MAX_PAGE_SIZE) break;
      fromRevision = page.at(-1)!.revision + 1n;
    }
    if (failed && failed.code !== 'EPIPE') throw failed;
    return printed;
  } finally {
    // Kept after a reader went away: a late write (a log line) must not crash the exit on it either.
    if (!failed) out.off('error', onError);
  }
}
