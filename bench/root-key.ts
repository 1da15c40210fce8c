/**
 * Root key benchmark: `npm run bench:root-key` (see bench/README.md).
 *
 * Key-version unwraps per second through the PKCS#11 root key (SoftHSM 2 in a temporary token directory of this run's
 * own, AES-256-GCM inside the token, async calls on the provider's session pool) against the baseline, the file root
 * key (AES-256-GCM in node:crypto), measured in one run: one unwrap at a time, and many in flight. The scenarios run
 * in interleaved rounds, and each ratio is the median of the per-round ratios, so a slow spell of the machine touches
 * both sides alike. What is unwrapped is what the key cache unwraps on a miss: a 32-byte version key under its AAD.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keyVersionWrapAad } from '../src/crypto/key-version-cipher.js';
import { SecretBytes } from '../src/crypto/secret-bytes.js';
import { LocalRootKey, type RootKey } from '../src/root-keys/root-key.js';
import { createPkcs11RootKey } from '../src/root-keys/root-key-loader.js';
import { PKCS11_POOL_SIZE, type Pkcs11Settings } from '../src/root-keys/pkcs11-token.js';
import { setting } from './setting.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS_FILE = resolve(HERE, '../../bench/results/root-key.json');
const SOFTHSM_LIBRARY = process.env.BENCH_PKCS11_LIBRARY ?? '/usr/lib/softhsm/libsofthsm2.so';

const SECONDS = setting('BENCH_ROOT_KEY_SECONDS', 2);
const ROUNDS = setting('BENCH_ROOT_KEY_ROUNDS', 5);
const IN_FLIGHT = setting('BENCH_ROOT_KEY_IN_FLIGHT', 16);
/** Distinct wrapped versions, unwrapped in turn. */
const VERSIONS = 1000;

/** A SoftHSM token in a temporary directory: `SOFTHSM2_CONF` must name it before the library is initialised. */
function softHsmToken(dir: string): Pkcs11Settings {
  if (!existsSync(SOFTHSM_LIBRARY)) throw new Error(`no PKCS#11 module at ${SOFTHSM_LIBRARY}: apt-get install softhsm2, or set BENCH_PKCS11_LIBRARY`);
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  const pin = randomBytes(8).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'keyhold-bench', '--pin', pin, '--so-pin', `${pin}-so`], { stdio: 'ignore' });
  return { library: SOFTHSM_LIBRARY, tokenLabel: 'keyhold-bench', pin: { kind: 'inline', pin: SecretBytes.adopt(Buffer.from(pin)) } };
}

interface Material {
  readonly wrapped: Buffer;
  readonly aad: Buffer;
}

async function wrapVersions(key: RootKey): Promise<Material[]> {
  const materials: Material[] = [];
  for (let i = 0; i < VERSIONS; i++) {
    const aad = keyVersionWrapAad(randomUUID(), 1);
    const plaintext = randomBytes(32);
    const wrapped = await key.wrap(plaintext, aad);
    if (!(await key.unwrap(wrapped, aad)).equals(plaintext)) throw new Error('an unwrap did not give the wrapped key back');
    materials.push({ wrapped, aad });
  }
  return materials;
}

interface Measure {
  readonly unwraps: number;
  readonly seconds: number;
  /** Process CPU (user + system) per unwrap, µs: SoftHSM runs in this process, so its work counts too. */
  readonly cpuMicros: number;
}

/** Unwraps for `seconds`, keeping `inFlight` unwraps going. */
async function measure(key: RootKey, materials: readonly Material[], inFlight: number, seconds: number): Promise<Measure> {
  let next = 0;
  let unwraps = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const deadline = started + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const { wrapped, aad } = materials[next++ % materials.length]!;
      (await key.unwrap(wrapped, aad)).fill(0);
      unwraps += 1;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { unwraps, seconds: elapsed, cpuMicros: (used.user + used.system) / unwraps };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const SCENARIOS = [
  { name: 'file, one at a time', key: 'file', inFlight: 1 },
  { name: 'hsm, one at a time', key: 'hsm', inFlight: 1 },
  { name: `file, ${IN_FLIGHT} in flight`, key: 'file', inFlight: IN_FLIGHT },
  { name: `hsm, ${IN_FLIGHT} in flight`, key: 'hsm', inFlight: IN_FLIGHT },
] as const;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-bench-root-key-'));
  let hsm: RootKey | undefined;
  try {
    const file = new LocalRootKey(SecretBytes.random(32));
    hsm = await createPkcs11RootKey(softHsmToken(dir), { label: 'bench-root', what: 'bench' });
    const keys = { file, hsm };
    const materials = { file: await wrapVersions(file), hsm: await wrapVersions(hsm) };
    console.log(
      `root key unwraps: ${ROUNDS} rounds × ${SECONDS} s per scenario, ${VERSIONS} versions, HSM session pool of ${PKCS11_POOL_SIZE}, ` +
        `load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
    );
    for (const scenario of SCENARIOS) await measure(keys[scenario.key], materials[scenario.key], scenario.inFlight, 0.5);

    const rounds: Array<Record<string, Measure>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const results: Record<string, Measure> = {};
      // Rotated by one each round, so that no scenario always runs first or after the same neighbour.
      for (let i = 0; i < SCENARIOS.length; i++) {
        const scenario = SCENARIOS[(i + round) % SCENARIOS.length]!;
        results[scenario.name] = await measure(keys[scenario.key], materials[scenario.key], scenario.inFlight, SECONDS);
      }
      rounds.push(results);
    }

    const rate = (m: Measure) => m.unwraps / m.seconds;
    const rows = SCENARIOS.map((scenario) => {
      const runs = rounds.map((round) => round[scenario.name]!);
      const baseline = SCENARIOS.find((other) => other.key === 'file' && other.inFlight === scenario.inFlight)!;
      const ratio = median(rounds.map((round) => rate(round[scenario.name]!) / rate(round[baseline.name]!)));
      return {
        scenario: scenario.name,
        unwrapsPerSecond: Math.round(runs.reduce((sum, m) => sum + m.unwraps, 0) / runs.reduce((sum, m) => sum + m.seconds, 0)),
        cpuMicrosPerUnwrap: Number(median(runs.map((m) => m.cpuMicros)).toFixed(1)),
        vsFile: scenario.key === 'file' ? undefined : Number(ratio.toFixed(4)),
      };
    });
    console.log('\n| scenario | unwraps/s | CPU µs/unwrap | vs file (median of rounds) |\n|---|---:|---:|---:|');
    for (const row of rows) {
      const ratio = row.vsFile === undefined ? '(baseline)' : `${(row.vsFile * 100).toFixed(1)} %`;
      console.log(`| ${row.scenario} | ${row.unwrapsPerSecond.toLocaleString('en')} | ${row.cpuMicrosPerUnwrap} | ${ratio} |`);
    }
    mkdirSync(dirname(RESULTS_FILE), { recursive: true });
    writeFileSync(RESULTS_FILE, `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, inFlight: IN_FLIGHT, rows, rounds }, null, 2)}\n`);
    console.log(`\nwritten to ${RESULTS_FILE}`);
  } finally {
    await hsm?.close?.();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
