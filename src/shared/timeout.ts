export class TimeoutError extends Error {}

/** Settles as `promise` does, or rejects with a TimeoutError after `timeoutMs`; the timer never outlives it. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timeout: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timeout = setTimeout(() => reject(new TimeoutError(`timed out after ${timeoutMs} ms`)), timeoutMs)))]);
  } finally {
    clearTimeout(timeout);
  }
}
