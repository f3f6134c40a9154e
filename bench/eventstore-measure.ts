/**
 * Closed-loop load generator and latency statistics for bench/eventstore.bench.ts.
 *
 * `workers` concurrent loops each await one operation at a time (so concurrency equals the pool
 * size of the store under test). A case stops at the deadline or once `maxOps` operations were
 * started, whichever comes first. Latencies go into a bounded reservoir sample, so memory stays
 * flat however fast the store is.
 */

export interface LoadOptions {
  workers: number;
  seconds: number;
  /** Upper bound on operations started in this case, across all workers. */
  maxOps: number;
  /** Latency samples kept (reservoir). */
  maxSamples?: number;
}

export interface LoadResult {
  ops: number;
  events: number;
  elapsedSeconds: number;
  opsPerSecond: number;
  eventsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** One operation of worker `worker`; resolves with the number of events it wrote. */
export type Operation = (worker: number) => Promise<number>;

const DEFAULT_MAX_SAMPLES = 200_000;

export async function runLoad(options: LoadOptions, operation: Operation): Promise<LoadResult> {
  const capacity = options.maxSamples ?? DEFAULT_MAX_SAMPLES;
  const samples = new Float64Array(capacity);
  let sampleCount = 0;
  let seen = 0;
  let random = 0x9e3779b9; // deterministic xorshift for the reservoir
  const nextRandom = () => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 0x1_0000_0000;
  };
  const record = (ms: number) => {
    seen++;
    if (sampleCount < capacity) {
      samples[sampleCount++] = ms;
      return;
    }
    const slot = Math.floor(nextRandom() * seen);
    if (slot < capacity) samples[slot] = ms;
  };

  let started = 0;
  let ops = 0;
  let events = 0;
  let stop = false;
  const timer = setTimeout(() => {
    stop = true;
  }, options.seconds * 1_000);

  const begin = process.hrtime.bigint();
  const loop = async (worker: number) => {
    while (!stop && started < options.maxOps) {
      started++;
      const t0 = process.hrtime.bigint();
      const written = await operation(worker);
      record(Number(process.hrtime.bigint() - t0) / 1e6);
      ops++;
      events += written;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.workers }, (_, worker) => loop(worker)));
  } finally {
    clearTimeout(timer);
    stop = true;
  }
  const elapsedSeconds = Number(process.hrtime.bigint() - begin) / 1e9;

  const sorted = samples.subarray(0, sampleCount).sort();
  return {
    ops,
    events,
    elapsedSeconds,
    opsPerSecond: ops / elapsedSeconds,
    eventsPerSecond: events / elapsedSeconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const middle = Math.floor(finite.length / 2);
  return finite.length % 2 === 1 ? finite[middle]! : (finite[middle - 1]! + finite[middle]!) / 2;
}
