/**
 * Rejects with `message` once `ms` have passed, unless `promise` settles first. The work itself is not cancelled:
 * callers that time out must treat its outcome as unknown.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, message = 'timed out'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
