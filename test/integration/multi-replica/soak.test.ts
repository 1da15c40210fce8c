import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters, type ApiResult, type Replica } from '../../helpers/replicas.js';

/**
 * Modelled on Vault's TestPolicyFuzzing: for SOAK_MS, workers spread over three replicas issue data keys and
 * decrypt, while one owner per key rotates it, moves its minimum decryption version, disables and enables it and its
 * versions, and another worker keeps changing the workload's policy. Every refusal must be explained by a state the
 * key or the policy was in around the request; nothing may answer 5xx; and once the writes stop, every replica
 * must answer every ciphertext exactly as the final state says.
 */
const SOAK_MS = Number(process.env.KEYHOLD_SOAK_MS ?? 60_000);
const KEY_NAMES = ['soak-0', 'soak-1', 'soak-2', 'soak-3'];
/** The key the policy worker denies now and then. */
const GUARDED_KEY = 'soak-0';
const WORKLOAD_WORKERS = 6;
/** How far back a state may still explain a refusal: a generous bound on cross-replica propagation. */
const EFFECT_WINDOW_MS = 2000;

interface KeySnapshot {
  readonly state: string;
  readonly primaryVersion: number;
  readonly minDecryptionVersion: number;
  readonly versions: ReadonlyArray<{ readonly version: number; readonly state: string }>;
}

/** Values over time: each from when the write that made it was sent. */
class History<T> {
  readonly #entries: Array<{ at: number; value: T }> = [];
  constructor(initial: T) {
    this.#entries.push({ at: Number.NEGATIVE_INFINITY, value: initial });
  }
  record(at: number, value: T): void {
    this.#entries.push({ at, value });
  }
  get latest(): T {
    return this.#entries[this.#entries.length - 1]!.value;
  }
  /** Every value that may have been in effect on some replica between `from` and `to`. */
  during(from: number, to: number): T[] {
    const start = this.#entries.findLastIndex((entry) => entry.at <= from);
    return this.#entries.slice(Math.max(0, start)).filter((entry) => entry.at <= to).map((entry) => entry.value);
  }
}

const versionState = (key: KeySnapshot, version: number) => key.versions.find((v) => v.version === version)?.state;

/** The answer the final state demands for a ciphertext under `version`. */
function expectedDecrypt(key: KeySnapshot, version: number): string {
  if (key.state !== 'enabled') return 'KH_ERR_KEY_DISABLED';
  if (version < key.minDecryptionVersion) return 'KH_ERR_KEY_VERSION_BELOW_MINIMUM';
  if (versionState(key, version) !== 'enabled') return 'KH_ERR_KEY_VERSION_DISABLED';
  return 'ok';
}

function explainsRefusal(code: string, states: readonly KeySnapshot[], version: number | undefined): boolean {
  return states.some((key) => {
    switch (code) {
      case 'KH_ERR_KEY_DISABLED':
        return key.state === 'disabled';
      case 'KH_ERR_KEY_VERSION_DISABLED':
        return versionState(key, version ?? key.primaryVersion) === 'disabled';
      case 'KH_ERR_KEY_VERSION_BELOW_MINIMUM':
        return version !== undefined && version < key.minDecryptionVersion;
      default:
        return false;
    }
  });
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

describe.runIf(DATABASE_KINDS.includes('postgres'))('soak across three replicas [postgres]', () => {
  afterEach(stopAllClusters);

  it(`random data keys, decrypts, rotations, minimum versions, disables and policy changes for ${SOAK_MS / 1000} s`, async () => {
    const cluster = await startCluster({ replicas: 3 });
    const replicas = cluster.replicas;
    const [first] = replicas as [Replica];
    const keys = new Map<string, History<KeySnapshot>>();
    for (const name of KEY_NAMES) {
      const created = await first.call('POST', '/v1/keys', { name });
      expect(created.status).toBe(201);
      keys.set(name, new History<KeySnapshot>(created.body));
    }
    const allow = { effect: 'allow', principals: ['token:soak'], actions: ['datakey', 'decrypt'], keys: ['soak-*'] };
    const deny = { effect: 'deny', principals: ['token:soak'], actions: ['*'], keys: [GUARDED_KEY] };
    expect((await first.call('PUT', '/v1/policies/soak', { statements: [allow] })).status).toBe(201);
    const denied = new History<boolean>(false);
    const workload = (await first.call('POST', '/v1/tokens', { name: 'soak' })).body.token as string;

    const ciphertexts: Array<{ key: string; version: number; ciphertext: string }> = [];
    const totals = new Map<string, number>();
    const count = (what: string) => totals.set(what, (totals.get(what) ?? 0) + 1);
    const violations: string[] = [];
    const deadline = performance.now() + SOAK_MS;
    const running = () => performance.now() < deadline;

    /**
     * Refusals are judged after the run: a write's new state is known only when its answer arrives, which can be
     * after a replica already refused because of it.
     */
    const refusals: Array<() => void> = [];
    const judge = (op: string, key: string, version: number | undefined, started: number, response: ApiResult, replica: Replica) => {
      if (response.status === 200) {
        count(`${op} ok`);
        return;
      }
      const answered = performance.now();
      refusals.push(() => {
        const code = response.body?.code as string | undefined;
        const window = [started - EFFECT_WINDOW_MS, answered] as const;
        // A caller denied every use of a key is refused its ciphertexts as ciphertexts of no key (400), other calls 403.
        const deniedCode = op === 'decrypt' ? 'KH_ERR_DECRYPTION_FAILED' : 'KH_ERR_FORBIDDEN';
        const explained =
          response.status === 403 || (op === 'decrypt' && response.status === 400)
            ? code === deniedCode && key === GUARDED_KEY && denied.during(...window).includes(true)
            : response.status === 409 && code !== undefined && explainsRefusal(code, keys.get(key)!.during(...window), version);
        if (explained) count(`${op} refused ${code}`);
        else {
          violations.push(
            `${op} ${key} v${version ?? '-'} on replica ${replica.index}: ${response.status} ${code ?? response.text.slice(0, 80)} ` +
              `(answered after ${Math.round(answered - started)} ms)`,
          );
        }
      });
    };

    const workloadWorker = async () => {
      while (running()) {
        const replica = pick(replicas);
        const started = performance.now();
        if (ciphertexts.length === 0 || Math.random() < 0.4) {
          const key = pick(KEY_NAMES);
          const response = await replica.call('POST', `/v1/keys/${key}/datakey`, {}, workload);
          judge('datakey', key, undefined, started, response, replica);
          if (response.status === 200) ciphertexts.push({ key, version: response.body.keyVersion, ciphertext: response.body.ciphertext });
        } else {
          const { key, version, ciphertext } = pick(ciphertexts);
          judge('decrypt', key, version, started, await replica.call('POST', '/v1/decrypt', { ciphertext }, workload), replica);
        }
      }
    };

    /** One owner per key, so the key's history is exactly the sequence of its writes. */
    const keyOwner = async (name: string) => {
      const history = keys.get(name)!;
      while (running()) {
        const key = history.latest;
        const replica = pick(replicas);
        const choices: Array<[string, string, string, unknown?]> =
          key.state === 'disabled'
            ? [['enable', 'POST', `/v1/keys/${name}/enable`]]
            : [
                ['rotate', 'POST', `/v1/keys/${name}/rotate`],
                ['rotate', 'POST', `/v1/keys/${name}/rotate`],
                ['min-version', 'PATCH', `/v1/keys/${name}`, { minDecryptionVersion: 1 + Math.floor(Math.random() * key.primaryVersion) }],
                ['disable', 'POST', `/v1/keys/${name}/disable`],
                ...key.versions.map((v): [string, string, string] => {
                  const action = v.state === 'enabled' ? 'disable' : 'enable';
                  return [`version-${action}`, 'POST', `/v1/keys/${name}/versions/${v.version}/${action}`];
                }),
              ];
        const [op, method, path, body] = pick(choices);
        const started = performance.now();
        const response = await replica.call(method, path, body);
        if (response.status === 200) {
          history.record(started, response.body);
          count(`admin ${op}`);
        } else {
          violations.push(`admin ${op} ${name}: ${response.status} ${response.body?.code ?? response.text.slice(0, 80)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 150));
      }
    };

    const policyWorker = async () => {
      while (running()) {
        const next = !denied.latest;
        const started = performance.now();
        const response = await pick(replicas).call('PUT', '/v1/policies/soak', { statements: next ? [allow, deny] : [allow] });
        if (response.status === 200) {
          denied.record(started, next);
          count('admin policy');
        } else {
          violations.push(`policy write: ${response.status} ${response.body?.code}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 400));
      }
    };

    await Promise.all([
      ...Array.from({ length: WORKLOAD_WORKERS }, workloadWorker),
      ...KEY_NAMES.map(keyOwner),
      policyWorker(),
    ]);

    for (const refusal of refusals) refusal();
    // Quiesce, then every replica must answer every ciphertext exactly as the final state demands.
    await new Promise((resolve) => setTimeout(resolve, EFFECT_WINDOW_MS));
    let finalChecks = 0;
    for (const { key, version, ciphertext } of ciphertexts.filter((_, index) => index % 5 === 0)) {
      const expected = expectedDecrypt(keys.get(key)!.latest, version);
      for (const replica of replicas) {
        const response = await replica.call('POST', '/v1/decrypt', { ciphertext });
        const got = response.status === 200 ? 'ok' : (response.body?.code as string);
        if (got !== expected) violations.push(`final decrypt ${key} v${version} on replica ${replica.index}: ${got}, expected ${expected}`);
        finalChecks += 1;
      }
    }
    const summary = [...totals].sort().map(([what, n]) => `${what}: ${n}`).join(', ');
    console.log(`soak ${SOAK_MS / 1000} s over 3 replicas: ${summary}; final checks: ${finalChecks}; violations: ${violations.length}`);
    expect(violations.slice(0, 20)).toEqual([]);
    expect(totals.get('decrypt ok') ?? 0).toBeGreaterThan(0);
    expect(totals.get('admin rotate') ?? 0).toBeGreaterThan(0);
  }, SOAK_MS + 120_000);
});
