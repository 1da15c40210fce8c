/** A benchmark's numeric setting from the environment: `fallback` when unset or empty, else a number of at least `min`. */
export function setting(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) < min) throw new Error(`${name} must be a number of at least ${min}, got "${raw}"`);
  return Number(raw);
}
