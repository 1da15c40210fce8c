import type { AuthProvider, Credentials } from './auth-provider.js';

/**
 * An auth provider over credentials read from files that rotate. `fresh(epoch)` returns the credentials while they
 * may be used as they are; otherwise `load(epoch)` reads the files again. Concurrent callers share one load, and
 * `invalidate()` (the service answered 401) bumps the epoch, so a load that started before it is never fresh.
 */
export function refreshingProvider(
  load: (epoch: number) => Promise<Credentials>,
  fresh: (epoch: number) => Credentials | undefined,
): AuthProvider {
  let epoch = 0;
  let loading: Promise<Credentials> | undefined;
  return Object.freeze({
    credentials(): Promise<Credentials> {
      const current = fresh(epoch);
      if (current !== undefined) return Promise.resolve(current);
      if (loading === undefined) {
        const pending = load(epoch).finally(() => {
          if (loading === pending) loading = undefined;
        });
        loading = pending;
      }
      return loading;
    },
    invalidate(): void {
      epoch += 1;
    },
  });
}
