/**
 * SDK benchmark: `npm run bench:sdk` (see bench/README.md).
 *
 * One run, with a warm data-key cache, compares three ways of encrypting and decrypting the same messages:
 *   - `keyhold`: `@keyhold/sdk` against a Keyhold server started in this process (SQLite in a temporary directory);
 *   - `aws`:     `@aws-crypto/client-node` with a raw AES keyring (256-bit wrapping key, no remote call), its default
 *                committing suite without signatures (ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY) and its
 *                default frame length;
 *   - `node`:    the ceiling, bare node:crypto AES-256-GCM with one createCipheriv per message.
 * Sizes 1 KiB, 64 KiB and 1 MiB are one-shot calls, timed for a fixed duration, one at a time and with several calls
 * in flight; 64 MiB is timed for a fixed number of iterations, one-shot and streaming (Node streams for all three,
 * and Keyhold's Web Streams too). Cases that are compared are measured interleaved, in rounds, and each figure is the
 * median round's, so that load from other processes touches all of them alike. Then a child process
 * (bench/sdk-stream-rss.ts) streams 1 GiB through Keyhold's encrypt → decrypt and reports its peak RSS. The runner
 * prints a table with msgs/s, MB/s and the ratios Keyhold/AWS and Keyhold/node:crypto, and writes
 * bench/results/sdk-<timestamp>.json. The goals are informational; the exit status is non-zero only when the
 * benchmark itself failed (a round trip that does not give the plaintext back, a child that fails).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCM, type DecipherGCM } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ReadableStream, WritableStream } from 'node:stream/web';
import { fileURLToPath } from 'node:url';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { apiToken, createClient, type KeyholdClient } from '@keyhold/sdk';
import type { FastifyInstance } from 'fastify';
import { openKeyholdApp } from '../src/compose.js';
import { loadConfig } from '../src/config.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The compiled runner is dist/bench/sdk.js; the repository root is two levels up. */
const ROOT = resolve(HERE, '..', '..');
const RSS_CHILD = join(HERE, 'sdk-stream-rss.js');
const RESULTS_DIR = join(ROOT, 'bench', 'results');

const KiB = 1024;
const MiB = 1024 * KiB;
/** Plaintext bytes per MB in every MB/s figure. */
const MB = 1e6;
const ONE_SHOT_SIZES = [KiB, 64 * KiB, MiB] as const;
const LARGE_SIZE = 64 * MiB;
/** Chunks a stream's source hands on: what a file or socket read gives. */
const CHUNK_BYTES = 64 * KiB;
const KEY_NAME = 'bench-sdk';
/** Both SDKs bind the same context and check it on decryption. */
const CONTEXT: Readonly<Record<string, string>> = Object.freeze({ service: 'bench', tenant: 'tenant-0042' });
const AWS_SUITE = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/**
 * The goals: ratios of Keyhold's figure to AWS's and to bare node:crypto's, the streaming rate, and the peak RSS of
 * the 1 GiB stream. Informational.
 */
const GOALS = {
  oneShot1KiB: { ratio: 10, what: 'Keyhold/AWS msgs/s at 1 KiB (best concurrency of each)' },
  oneShot1KiBVsNode: { ratio: 0.6, what: 'Keyhold/node:crypto msgs/s at 1 KiB (Keyhold\'s best concurrency, cached data key)' },
  stream64MiB: { ratio: 4, what: 'Keyhold/AWS MB/s streaming 64 MiB (best Keyhold stream flavour)' },
  stream64MiBRate: { megabytesPerSecond: 2000, what: 'Keyhold MB/s streaming 64 MiB (best Keyhold stream flavour)' },
  streamRssMB: { max: 150, what: 'peak RSS streaming 1 GiB through Keyhold encrypt → decrypt' },
} as const;

/** A failure of the benchmark itself, as opposed to a slow result. */
class BenchError extends Error {}

interface Settings {
  readonly seconds: number;
  /** Rounds each one-shot case's seconds are split into, interleaved with the cases it is compared with. */
  readonly rounds: number;
  readonly warmupSeconds: number;
  readonly concurrency: number;
  readonly largeIterations: number;
  readonly rssBytes: number;
}

function numberSetting(name: string, fallback: number, min: number, integer: boolean): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new BenchError(`${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got "${raw}"`);
  }
  return value;
}

function loadSettings(): Settings {
  return {
    seconds: numberSetting('BENCH_SDK_SECONDS', 3, 0.1, false),
    rounds: numberSetting('BENCH_SDK_ROUNDS', 3, 1, true),
    warmupSeconds: numberSetting('BENCH_SDK_WARMUP', 0.5, 0, false),
    concurrency: numberSetting('BENCH_SDK_CONCURRENCY', 8, 2, true),
    largeIterations: numberSetting('BENCH_SDK_LARGE_ITERATIONS', 5, 1, true),
    rssBytes: numberSetting('BENCH_SDK_RSS_MIB', 1024, 1, true) * MiB,
  };
}

/**
 * The commit the SDK was built from, and whether sdk/src differs from it: figures are only comparable between runs of
 * the same code. Undefined outside a git checkout.
 */
function sdkRevision(): string | undefined {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'sdk/src') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' with uncommitted changes in sdk/src' : ''}`;
  } catch {
    return undefined;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------------------------
// The three subjects: one interface, so every case treats them alike.

type Implementation = 'keyhold' | 'aws' | 'node';
/** `node-stream` is a Node.js Duplex in `stream.pipeline`; `web-stream` a Web Streams TransformStream (Keyhold only). */
type Mode = 'one-shot' | 'node-stream' | 'web-stream';
type Operation = 'encrypt' | 'decrypt';

interface Subject {
  readonly name: Implementation;
  encrypt(plaintext: Buffer): Promise<Uint8Array>;
  decrypt(message: Uint8Array): Promise<Uint8Array>;
  /** Node.js streams: a fresh transform per message. */
  encryptNodeStream(): NodeJS.ReadWriteStream;
  decryptNodeStream(): NodeJS.ReadWriteStream;
  /** What a stream decryptor reads: the message, or for node:crypto the bare ciphertext (its tag is set apart). */
  streamInput(message: Uint8Array): Uint8Array;
}

function keyholdSubject(client: KeyholdClient): Subject {
  return {
    name: 'keyhold',
    encrypt: (plaintext) => client.encrypt(KEY_NAME, plaintext, { context: CONTEXT }),
    decrypt: (message) => client.decrypt(message, { expectedContext: CONTEXT }),
    encryptNodeStream: () => client.encryptNodeStream(KEY_NAME, { context: CONTEXT }),
    decryptNodeStream: () => client.decryptNodeStream({ expectedContext: CONTEXT }),
    streamInput: (message) => message,
  };
}

function awsSubject(): Subject {
  const aws = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const keyring = new RawAesKeyringNode({
    keyNamespace: 'keyhold-bench',
    keyName: 'wrapping-key',
    unencryptedMasterKey: randomBytes(32),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  // AWS returns the context for the caller to check; Keyhold checks `expectedContext` itself. Both pay for it.
  const checkContext = (context: Readonly<Record<string, string>>): void => {
    for (const [name, value] of Object.entries(CONTEXT)) {
      if (context[name] !== value) throw new BenchError('AWS: the decrypted message has another encryption context');
    }
  };
  return {
    name: 'aws',
    async encrypt(plaintext) {
      return (await aws.encrypt(keyring, plaintext, { encryptionContext: CONTEXT, suiteId: AWS_SUITE })).result;
    },
    async decrypt(message) {
      const { plaintext, messageHeader } = await aws.decrypt(keyring, message);
      checkContext(messageHeader.encryptionContext);
      return plaintext;
    },
    encryptNodeStream: () => aws.encryptStream(keyring, { encryptionContext: CONTEXT, suiteId: AWS_SUITE }),
    decryptNodeStream() {
      const stream = aws.decryptStream(keyring);
      stream.once('MessageHeader', (header: { encryptionContext: Record<string, string> }) => {
        try {
          checkContext(header.encryptionContext);
        } catch (error) {
          stream.destroy(error as Error);
        }
      });
      return stream;
    },
    streamInput: (message) => message,
  };
}

/**
 * The ceiling: AES-256-GCM under one key, a random IV per message, the message being IV ‖ ciphertext ‖ tag. No key
 * derivation, header, framing or context. Its streams are node:crypto's own Cipher/Decipher transforms, and its
 * stream decryptor releases plaintext before the tag is checked, which neither SDK does.
 */
function nodeSubject(): Subject {
  const key = randomBytes(32);
  // The IV and tag of the message streamInput last split: enough for a benchmark that stream-decrypts one message.
  let streamIv: Buffer | undefined;
  let streamTag: Buffer | undefined;
  return {
    name: 'node',
    async encrypt(plaintext) {
      const iv = randomBytes(GCM_IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = cipher.update(plaintext);
      const tail = cipher.final();
      return Buffer.concat([iv, body, tail, cipher.getAuthTag()]);
    },
    async decrypt(message) {
      const iv = message.subarray(0, GCM_IV_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAuthTag(message.subarray(message.length - GCM_TAG_BYTES));
      const body = decipher.update(message.subarray(GCM_IV_BYTES, message.length - GCM_TAG_BYTES));
      const tail = decipher.final();
      return tail.length === 0 ? body : Buffer.concat([body, tail]);
    },
    encryptNodeStream(): CipherGCM {
      return createCipheriv('aes-256-gcm', key, randomBytes(GCM_IV_BYTES));
    },
    decryptNodeStream() {
      const decipher: DecipherGCM = createDecipheriv('aes-256-gcm', key, streamIv!);
      decipher.setAuthTag(streamTag!);
      return decipher;
    },
    streamInput(message) {
      streamIv = Buffer.from(message.subarray(0, GCM_IV_BYTES));
      streamTag = Buffer.from(message.subarray(message.length - GCM_TAG_BYTES));
      return message.subarray(GCM_IV_BYTES, message.length - GCM_TAG_BYTES);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Sources and sinks: every stream reads the same 64 KiB chunks (views, no copies) and writes to a counting sink.

function chunksOf(bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += CHUNK_BYTES) {
    chunks.push(bytes.subarray(offset, Math.min(bytes.length, offset + CHUNK_BYTES)));
  }
  return chunks;
}

function nodeSource(chunks: readonly Uint8Array[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

function nodeSink(): { sink: Writable; total: () => number } {
  let total = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      total += chunk.length;
      done();
    },
  });
  return { sink, total: () => total };
}

function webSource(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]!);
      else controller.close();
    },
  });
}

function webSink(): { sink: WritableStream<Uint8Array>; total: () => number } {
  let total = 0;
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      total += chunk.byteLength;
    },
  });
  return { sink, total: () => total };
}

/** Streams `input` through `transform` into a counting sink; returns the bytes that came out. */
async function throughNodeStream(input: Uint8Array, transform: NodeJS.ReadWriteStream): Promise<number> {
  const { sink, total } = nodeSink();
  await pipeline(nodeSource(chunksOf(input)), transform, sink);
  return total();
}

async function throughWebStream(input: Uint8Array, transform: TransformStream<Uint8Array, Uint8Array>): Promise<number> {
  const { sink, total } = webSink();
  await webSource(chunksOf(input)).pipeThrough(transform).pipeTo(sink);
  return total();
}

// ---------------------------------------------------------------------------------------------------------------
// Timing

interface Measurement {
  readonly implementation: Implementation;
  readonly operation: Operation;
  readonly mode: Mode;
  readonly size: number;
  readonly concurrency: number;
  /** Messages and seconds over all timed samples. */
  readonly messages: number;
  readonly seconds: number;
  /** The median sample's rate: one disturbed sample (a GC, a burst of page faults, another process) does not move it. */
  readonly messagesPerSecond: number;
  /** Plaintext MB (10^6 bytes) per second, for encryption and decryption alike. */
  readonly megabytesPerSecond: number;
  /** This process's user + system CPU per message (all threads, GC included), in microseconds; median sample. */
  readonly cpuMicrosecondsPerMessage: number;
  readonly samples: readonly Sample[];
}

/** One timed stretch of one case: a round of a one-shot case, or one iteration of a 64 MiB case. */
interface Sample {
  readonly messages: number;
  readonly seconds: number;
  readonly cpuMicroseconds: number;
}

type Run = () => Promise<unknown>;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function measurementOf(
  what: Pick<Measurement, 'implementation' | 'operation' | 'mode' | 'size' | 'concurrency'>,
  samples: readonly Sample[],
): Measurement {
  const messagesPerSecond = median(samples.map((sample) => sample.messages / sample.seconds));
  return {
    ...what,
    messages: samples.reduce((sum, sample) => sum + sample.messages, 0),
    seconds: samples.reduce((sum, sample) => sum + sample.seconds, 0),
    messagesPerSecond,
    megabytesPerSecond: (messagesPerSecond * what.size) / MB,
    cpuMicrosecondsPerMessage: median(samples.map((sample) => sample.cpuMicroseconds / sample.messages)),
    samples,
  };
}

/**
 * Runs `run` from `concurrency` loops until `seconds` have passed (or, with `iterations`, that many times from one
 * loop); every started call is counted and awaited.
 */
async function sample(run: Run, concurrency: number, limit: { seconds: number } | { iterations: number }): Promise<Sample> {
  let started = 0;
  let messages = 0;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const deadline = 'seconds' in limit ? start + limit.seconds * 1000 : Infinity;
  const most = 'iterations' in limit ? limit.iterations : Infinity;
  const loop = async (): Promise<void> => {
    while (started < most && performance.now() < deadline) {
      started += 1;
      await run();
      messages += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const cpu = process.cpuUsage(cpuBefore);
  return { messages, seconds: (performance.now() - start) / 1000, cpuMicroseconds: cpu.user + cpu.system };
}

interface Case {
  readonly what: Pick<Measurement, 'implementation' | 'operation' | 'mode' | 'size' | 'concurrency'>;
  readonly run: Run;
}

/**
 * Measures cases that are compared with each other, interleaved: each is warmed up, then every round times each case
 * once, in turn. Drift in the machine's load then touches all of them alike instead of the one measured last.
 */
async function measureTogether(
  cases: readonly Case[],
  rounds: number,
  warmUp: (run: Run, concurrency: number) => Promise<unknown>,
  limit: { seconds: number } | { iterations: number },
): Promise<Measurement[]> {
  for (const { run, what } of cases) await warmUp(run, what.concurrency);
  const samples = cases.map((): Sample[] => []);
  for (let round = 0; round < rounds; round++) {
    for (const [index, { run, what }] of cases.entries()) samples[index]!.push(await sample(run, what.concurrency, limit));
  }
  return cases.map(({ what }, index) => measurementOf(what, samples[index]!));
}

function progress(text: string): void {
  process.stdout.write(text);
}

// ---------------------------------------------------------------------------------------------------------------
// The Keyhold server, in this process

interface Server {
  readonly url: string;
  readonly adminToken: string;
  close(): Promise<void>;
}

/** Keyhold as it starts by default (audit on), on SQLite in a temporary directory, on a free port. */
async function startServer(): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-sdk-'));
  const adminToken = `kh_bench_${randomBytes(24).toString('hex')}`;
  let app: FastifyInstance | undefined;
  try {
    // Only these variables: Keyhold's own KEYHOLD_* settings from the shell are not passed in.
    const config = loadConfig({
      KEYHOLD_DATA_DIR: dataDir,
      KEYHOLD_DATABASE_URL: `sqlite:${join(dataDir, 'keyhold.sqlite')}`,
      KEYHOLD_ROOT_KEY: randomBytes(32).toString('base64'),
      KEYHOLD_BOOTSTRAP_TOKEN: adminToken,
      KEYHOLD_LOG_LEVEL: 'warn',
      KEYHOLD_HOST: '127.0.0.1',
      KEYHOLD_PORT: '0',
    });
    ({ app } = await openKeyholdApp(config));
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const response = await fetch(`${url}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: KEY_NAME }),
    });
    if (response.status !== 201) throw new BenchError(`POST /v1/keys answered ${response.status}: ${await response.text()}`);
    const started = app;
    return {
      url,
      adminToken,
      async close() {
        await started.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The cases

interface Inputs {
  readonly plaintext: Buffer;
  /**
   * Messages per subject, made before timing, all of `plaintext`; decryption cases go round them. Each message has its
   * own message id and content key, as in production, so nothing could be saved by remembering one message.
   */
  readonly messages: ReadonlyMap<Implementation, readonly Uint8Array[]>;
}

/** How many distinct messages a decryption case goes round: a few of the large ones, to bound memory. */
function distinctMessages(size: number): number {
  return size <= 64 * KiB ? 32 : size <= MiB ? 8 : 1;
}

/**
 * Encrypts `plaintext` with every subject and checks that each gives it back, one-shot; the warm-up of each size.
 */
async function prepare(subjects: readonly Subject[], size: number): Promise<Inputs> {
  const plaintext = randomBytes(size);
  const messages = new Map<Implementation, Uint8Array[]>();
  for (const subject of subjects) {
    const made: Uint8Array[] = [];
    for (let i = 0; i < distinctMessages(size); i++) {
      const message = await subject.encrypt(plaintext);
      const back = await subject.decrypt(message);
      if (!Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(plaintext)) {
        throw new BenchError(`${subject.name}: a ${sizeLabel(size)} round trip did not give the plaintext back`);
      }
      made.push(message);
    }
    messages.set(subject.name, made);
  }
  return { plaintext, messages };
}

function oneShotRun(subject: Subject, operation: Operation, inputs: Inputs): Run {
  if (operation === 'encrypt') return () => subject.encrypt(inputs.plaintext);
  const messages = inputs.messages.get(subject.name)!;
  let next = 0;
  return () => subject.decrypt(messages[next++ % messages.length]!);
}

async function measureOneShot(
  subjects: readonly Subject[],
  settings: Settings,
  size: number,
  inputs: Inputs,
  results: Measurement[],
): Promise<void> {
  for (const operation of ['encrypt', 'decrypt'] as const) {
    for (const concurrency of [1, settings.concurrency]) {
      // node:crypto is synchronous: calls in flight on one thread only add promise overhead, so it runs one at a time.
      const cases = subjects
        .filter((subject) => subject.name !== 'node' || concurrency === 1)
        .map((subject): Case => ({
          what: { implementation: subject.name, operation, mode: 'one-shot', size, concurrency },
          run: oneShotRun(subject, operation, inputs),
        }));
      progress(`  ${sizeLabel(size)} ${operation} one-shot, ${concurrency} in flight:`);
      const measured = await measureTogether(
        cases,
        settings.rounds,
        (run, inFlight) => (settings.warmupSeconds > 0 ? sample(run, inFlight, { seconds: settings.warmupSeconds }) : Promise.resolve()),
        { seconds: settings.seconds / settings.rounds },
      );
      results.push(...measured);
      progress(`${measured.map((m) => ` ${m.implementation} ${formatRate(m.messagesPerSecond)}`).join(',')} msgs/s\n`);
    }
  }
}

async function measureLarge(
  subjects: readonly Subject[],
  client: KeyholdClient,
  settings: Settings,
  results: Measurement[],
): Promise<void> {
  const size = LARGE_SIZE;
  const inputs = await prepare(subjects, size);
  const expectLength = (what: string, actual: number, expected: number): void => {
    if (actual !== expected) throw new BenchError(`${what}: ${actual} bytes came out, expected ${expected}`);
  };
  const what = (implementation: Implementation, operation: Operation, mode: Mode): Case['what'] =>
    ({ implementation, operation, mode, size, concurrency: 1 });
  // One warm-up run each, which also checks the output; then the iterations, interleaved.
  const measure = async (label: string, cases: readonly Case[]): Promise<void> => {
    progress(`  ${sizeLabel(size)} ${label}:`);
    const measured = await measureTogether(cases, settings.largeIterations, (run) => run(), { iterations: 1 });
    results.push(...measured);
    const shown = measured.map((m) => ` ${m.implementation}${m.mode === 'web-stream' ? ' (web)' : ''} ${m.megabytesPerSecond.toFixed(0)}`);
    progress(`${shown.join(',')} MB/s\n`);
  };

  for (const operation of ['encrypt', 'decrypt'] as const) {
    await measure(`${operation} one-shot`, subjects.map((subject) => ({
      what: what(subject.name, operation, 'one-shot'),
      run: oneShotRun(subject, operation, inputs),
    })));

    const streams = subjects.map((subject): Case => {
      const message = inputs.messages.get(subject.name)![0]!;
      const input = subject.streamInput(message);
      return {
        what: what(subject.name, operation, 'node-stream'),
        run: operation === 'encrypt'
          ? async () => {
            // Keyhold and AWS streams write what one-shot writes; node:crypto's stream leaves the IV and tag out.
            expectLength(`${subject.name} encrypt stream`, await throughNodeStream(inputs.plaintext, subject.encryptNodeStream()), input.length);
          }
          : async () => {
            expectLength(`${subject.name} decrypt stream`, await throughNodeStream(input, subject.decryptNodeStream()), size);
          },
      };
    });
    const keyholdMessage = inputs.messages.get('keyhold')![0]!;
    streams.splice(1, 0, {
      what: what('keyhold', operation, 'web-stream'),
      run: operation === 'encrypt'
        ? async () => {
          const out = await throughWebStream(inputs.plaintext, client.encryptStream(KEY_NAME, { context: CONTEXT }));
          expectLength('keyhold encrypt web stream', out, keyholdMessage.length);
        }
        : async () => {
          const out = await throughWebStream(keyholdMessage, client.decryptStream({ expectedContext: CONTEXT }));
          expectLength('keyhold decrypt web stream', out, size);
        },
    });
    await measure(`${operation} streaming`, streams);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Peak RSS, in a child process so nothing this process holds counts

interface RssResult {
  readonly flavour: 'node-stream' | 'web-stream';
  readonly bytes: number;
  readonly seconds: number;
  readonly megabytesPerSecond: number;
  /** process.resourceUsage().maxRSS in MB (10^6 bytes), before the stream started and at its end. */
  readonly maxRssBeforeMB: number;
  readonly maxRssMB: number;
  /** VmHWM of /proc/self/status at the end (Linux only): the same peak, for the process image alone. */
  readonly vmHwmMB: number | undefined;
  readonly heapUsedAfterMB: number;
  readonly arrayBuffersAfterMB: number;
}

function measureRss(server: Server, flavour: RssResult['flavour'], bytes: number): Promise<RssResult> {
  return new Promise((resolveRun, rejectRun) => {
    // Linux keeps a process's peak RSS across fork and exec: a child spawned straight from this runner would report
    // at least this runner's peak (its 64 MiB buffers), whatever it used itself. A shell that runs node as a child
    // (not by exec, hence the `; exit`) starts node from the shell's small address space instead.
    const [command, args] = process.platform === 'win32'
      ? [process.execPath, [RSS_CHILD]]
      : ['/bin/sh', ['-c', '"$0" "$1"; exit $?', process.execPath, RSS_CHILD]];
    const child = spawn(command, args, {
      env: {
        PATH: process.env.PATH,
        KEYHOLD_BENCH_URL: server.url,
        KEYHOLD_BENCH_TOKEN: server.adminToken,
        KEYHOLD_BENCH_KEY: KEY_NAME,
        KEYHOLD_BENCH_CONTEXT: JSON.stringify(CONTEXT),
        KEYHOLD_BENCH_BYTES: String(bytes),
        KEYHOLD_BENCH_FLAVOUR: flavour,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', rejectRun);
    child.once('exit', (code, signal) => {
      if (code !== 0) {
        rejectRun(new BenchError(`the RSS child (${flavour}) exited with ${signal ?? `code ${code}`}: ${stderr.trim() || stdout.trim()}`));
        return;
      }
      try {
        resolveRun(JSON.parse(stdout.trim().split('\n').at(-1)!) as RssResult);
      } catch (error) {
        rejectRun(new BenchError(`the RSS child (${flavour}) printed no result: ${messageOf(error)}\n${stdout}${stderr}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Report

interface Comparison {
  readonly size: number;
  readonly operation: Operation;
  /** The Keyhold flavour of the row; AWS and node:crypto use their one-shot or Node stream figure. */
  readonly mode: Mode;
  readonly concurrency: number;
  readonly keyhold: Measurement | undefined;
  readonly aws: Measurement | undefined;
  readonly node: Measurement | undefined;
  readonly keyholdToAws: number | undefined;
  readonly keyholdToNode: number | undefined;
  /**
   * AWS's CPU per message over Keyhold's: the same comparison in CPU time, which moves much less than wall-clock
   * rates when other processes share the machine.
   */
  readonly keyholdToAwsByCpu: number | undefined;
}

function ratio(a: Measurement | undefined, b: Measurement | undefined): number | undefined {
  return a === undefined || b === undefined || b.messagesPerSecond <= 0 ? undefined : a.messagesPerSecond / b.messagesPerSecond;
}

/** `ratio` in CPU time: b's CPU per message over a's. */
function cpuRatio(a: Measurement | undefined, b: Measurement | undefined): number | undefined {
  return a === undefined || b === undefined || a.cpuMicrosecondsPerMessage <= 0
    ? undefined
    : b.cpuMicrosecondsPerMessage / a.cpuMicrosecondsPerMessage;
}

function compare(results: readonly Measurement[], settings: Settings): Comparison[] {
  const find = (implementation: Implementation, size: number, operation: Operation, mode: Mode, concurrency: number) =>
    results.find((r) => r.implementation === implementation && r.size === size && r.operation === operation && r.mode === mode
      && r.concurrency === concurrency);
  const rows: Comparison[] = [];
  const row = (size: number, operation: Operation, mode: Mode, concurrency: number): void => {
    const keyhold = find('keyhold', size, operation, mode, concurrency);
    const otherMode = mode === 'web-stream' ? 'node-stream' : mode;
    const aws = find('aws', size, operation, otherMode, concurrency);
    // node:crypto runs sequentially only (see measureOneShot).
    const node = find('node', size, operation, otherMode, 1);
    const keyholdToAwsByCpu = cpuRatio(keyhold, aws);
    rows.push({
      size, operation, mode, concurrency, keyhold, aws, node,
      keyholdToAws: ratio(keyhold, aws),
      keyholdToNode: ratio(keyhold, node),
      keyholdToAwsByCpu,
    });
  };
  for (const size of ONE_SHOT_SIZES) {
    for (const operation of ['encrypt', 'decrypt'] as const) {
      for (const concurrency of [1, settings.concurrency]) row(size, operation, 'one-shot', concurrency);
    }
  }
  for (const operation of ['encrypt', 'decrypt'] as const) {
    for (const mode of ['one-shot', 'node-stream', 'web-stream'] as const) row(LARGE_SIZE, operation, mode, 1);
  }
  return rows;
}

function sizeLabel(size: number): string {
  return size >= MiB ? `${size / MiB} MiB` : `${size / KiB} KiB`;
}

function formatRate(value: number | undefined): string {
  if (value === undefined) return '–';
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2);
}

function formatRatio(value: number | undefined): string {
  return value === undefined ? '–' : `${value.toFixed(2)}×`;
}

function printTable(rows: readonly Comparison[]): void {
  const header = [
    'size', 'op', 'Keyhold mode', 'in flight',
    'Keyhold msgs/s', 'Keyhold MB/s', 'AWS msgs/s', 'AWS MB/s', 'node msgs/s', 'node MB/s',
    'KH/AWS', 'KH/node', 'KH/AWS by CPU', 'KH CPU µs/msg',
  ];
  const table = [
    header,
    ...rows.map((r) => [
      sizeLabel(r.size),
      r.operation,
      r.mode,
      String(r.concurrency),
      formatRate(r.keyhold?.messagesPerSecond),
      formatRate(r.keyhold?.megabytesPerSecond),
      formatRate(r.aws?.messagesPerSecond),
      formatRate(r.aws?.megabytesPerSecond),
      formatRate(r.node?.messagesPerSecond),
      formatRate(r.node?.megabytesPerSecond),
      formatRatio(r.keyholdToAws),
      formatRatio(r.keyholdToNode),
      formatRatio(r.keyholdToAwsByCpu),
      formatRate(r.keyhold?.cpuMicrosecondsPerMessage),
    ]),
  ];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
  const line = (cells: string[]): string =>
    cells.map((cell, column) => (column < 3 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  process.stdout.write(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  let previous = '';
  for (const cells of table.slice(1)) {
    const group = `${cells[0]} ${cells[1]}`;
    if (previous !== '' && group !== previous) process.stdout.write('\n');
    previous = group;
    process.stdout.write(`${line(cells)}\n`);
  }
  process.stdout.write(
    '\nMB = 10^6 plaintext bytes. AWS and node:crypto columns of a `web-stream` row repeat their Node-stream figures; ' +
      'node:crypto runs one call at a time (it is synchronous), and its stream rows are its own Cipher/Decipher ' +
      'transforms. Rates and CPU are those of the median round (one-shot) or iteration (64 MiB). CPU µs/msg is this process\'s CPU (all threads, ' +
      'GC included) over the timed run divided by the messages; `KH/AWS by CPU` is AWS\'s CPU per message over ' +
      'Keyhold\'s, steadier than the rates when other processes share the machine.\n',
  );
}

interface GoalResult {
  readonly what: string;
  readonly target: string;
  readonly measured: Record<string, number | undefined>;
  readonly met: boolean;
}

/** The fastest measurement `pick` finds in the rows `filter` keeps. */
function best(
  rows: readonly Comparison[],
  pick: (r: Comparison) => Measurement | undefined,
  filter: (r: Comparison) => boolean,
): Measurement | undefined {
  let winner: Measurement | undefined;
  for (const r of rows.filter(filter)) {
    const m = pick(r);
    if (m !== undefined && (winner === undefined || m.messagesPerSecond > winner.messagesPerSecond)) winner = m;
  }
  return winner;
}

/** A goal on the ratio of Keyhold's msgs/s to another implementation's. */
function messageRateGoal(what: string, target: number, keyhold: Measurement | undefined, other: Measurement | undefined, otherName: Implementation): GoalResult {
  const value = ratio(keyhold, other);
  return {
    what,
    target: `≥ ${target}×`,
    measured: {
      ratio: value,
      ratioByCpu: cpuRatio(keyhold, other),
      keyholdMsgsPerSecond: keyhold?.messagesPerSecond,
      keyholdInFlight: keyhold?.concurrency,
      [`${otherName}MsgsPerSecond`]: other?.messagesPerSecond,
      [`${otherName}InFlight`]: other?.concurrency,
    },
    met: value !== undefined && value >= target,
  };
}

function evaluateGoals(rows: readonly Comparison[], rss: readonly RssResult[]): Record<string, GoalResult> {
  const goals: Record<string, GoalResult> = {};
  for (const operation of ['encrypt', 'decrypt'] as const) {
    const small = (r: Comparison) => r.size === KiB && r.operation === operation && r.mode === 'one-shot';
    const kh = best(rows, (r) => r.keyhold, small);
    const aws = best(rows, (r) => r.aws, small);
    goals[`oneShot1KiB-${operation}`] = messageRateGoal(`${GOALS.oneShot1KiB.what}, ${operation}`, GOALS.oneShot1KiB.ratio, kh, aws, 'aws');
    const node = best(rows, (r) => r.node, small);
    goals[`oneShot1KiBVsNode-${operation}`] = messageRateGoal(`${GOALS.oneShot1KiBVsNode.what}, ${operation}`, GOALS.oneShot1KiBVsNode.ratio, kh, node, 'node');
    const stream = (r: Comparison) => r.size === LARGE_SIZE && r.operation === operation && r.mode !== 'one-shot';
    const khStream = best(rows, (r) => r.keyhold, stream);
    const awsStream = best(rows, (r) => r.aws, stream);
    const streamRatio = ratio(khStream, awsStream);
    goals[`stream64MiB-${operation}`] = {
      what: `${GOALS.stream64MiB.what}, ${operation} (${khStream?.mode ?? '?'})`,
      target: `≥ ${GOALS.stream64MiB.ratio}×`,
      measured: {
        ratio: streamRatio,
        ratioByCpu: cpuRatio(khStream, awsStream),
        keyholdMBPerSecond: khStream?.megabytesPerSecond,
        awsMBPerSecond: awsStream?.megabytesPerSecond,
      },
      met: streamRatio !== undefined && streamRatio >= GOALS.stream64MiB.ratio,
    };
    const rate = khStream?.megabytesPerSecond;
    goals[`stream64MiBRate-${operation}`] = {
      what: `${GOALS.stream64MiBRate.what}, ${operation} (${khStream?.mode ?? '?'})`,
      target: `≥ ${GOALS.stream64MiBRate.megabytesPerSecond} MB/s`,
      measured: { keyholdMBPerSecond: rate, nodeMBPerSecond: best(rows, (r) => r.node, stream)?.megabytesPerSecond },
      met: rate !== undefined && rate >= GOALS.stream64MiBRate.megabytesPerSecond,
    };
  }
  for (const r of rss) {
    goals[`streamRss-${r.flavour}`] = {
      what: `${GOALS.streamRssMB.what} (${r.flavour})`,
      target: `< ${GOALS.streamRssMB.max} MB`,
      measured: { maxRssMB: r.maxRssMB },
      met: r.maxRssMB < GOALS.streamRssMB.max,
    };
  }
  return goals;
}

function printGoals(goals: Record<string, GoalResult>): void {
  process.stdout.write('\nGoals (informational):\n');
  for (const goal of Object.values(goals)) {
    const { ratio: measuredRatio, ratioByCpu, maxRssMB, keyholdMBPerSecond, nodeMBPerSecond } = goal.measured;
    const shown = measuredRatio !== undefined ? `${formatRatio(measuredRatio)} (by CPU ${formatRatio(ratioByCpu)})`
      : maxRssMB !== undefined ? `${maxRssMB.toFixed(1)} MB`
        : keyholdMBPerSecond !== undefined ? `${keyholdMBPerSecond.toFixed(0)} MB/s (node:crypto's stream ${nodeMBPerSecond?.toFixed(0) ?? '?'} MB/s)` : '?';
    process.stdout.write(`  ${goal.met ? 'met  ' : 'BELOW'}  ${goal.what}: ${shown} (target ${goal.target})\n`);
  }
}

function writeResults(report: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(RESULTS_DIR, `sdk-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const settings = loadSettings();
  const cpuList = cpus();
  const loadBefore = loadavg();
  const started = performance.now();
  const revision = sdkRevision();
  process.stdout.write(
    `Keyhold SDK benchmark: node ${process.version}, ${cpuList.length} CPU(s) (${cpuList[0]?.model ?? 'unknown'}), ` +
      `load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, SDK at ${revision ?? 'an unknown revision'}\n` +
      `One-shot cases: ${settings.warmupSeconds} s of warm-up, then ${settings.seconds} s in ${settings.rounds} rounds ` +
      `interleaved with the other implementations, one and ${settings.concurrency} calls in flight; 64 MiB: one warm-up ` +
      `iteration, then ${settings.largeIterations} interleaved. Figures are the median round's or iteration's. The Keyhold ` +
      'server runs in this process and is idle once the data-key cache is warm.\n\n',
  );

  const server = await startServer();
  const client = createClient({ url: server.url, auth: apiToken(server.adminToken) });
  // Ctrl-C still removes the temporary data directory.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench:sdk: ${signal}, stopping\n`);
      void client.close().finally(() => server.close()).finally(() => process.exit(130));
    });
  }
  const results: Measurement[] = [];
  const rss: RssResult[] = [];
  const problems: string[] = [];
  const loads: Array<{ phase: string; loadAverage: number[] }> = [{ phase: 'start', loadAverage: loadBefore }];
  let cacheAfterWarmUp;
  let cacheAtEnd;
  try {
    const subjects = [keyholdSubject(client), awsSubject(), nodeSubject()];
    // One round trip fills Keyhold's cache (one data key, one unwrap): the only calls to the server in the run.
    await prepare(subjects, KiB);
    cacheAfterWarmUp = client.cache.stats();
    process.stdout.write(`Keyhold cache after warm-up: ${JSON.stringify(cacheAfterWarmUp)}\n`);

    for (const size of ONE_SHOT_SIZES) {
      const inputs = await prepare(subjects, size);
      await measureOneShot(subjects, settings, size, inputs, results);
      loads.push({ phase: sizeLabel(size), loadAverage: loadavg() });
    }
    await measureLarge(subjects, client, settings, results);
    loads.push({ phase: sizeLabel(LARGE_SIZE), loadAverage: loadavg() });
    cacheAtEnd = client.cache.stats();

    for (const flavour of ['node-stream', 'web-stream'] as const) {
      progress(`  peak RSS: ${sizeLabel(settings.rssBytes)} through Keyhold encrypt → decrypt (${flavour}) in a child process…`);
      const result = await measureRss(server, flavour, settings.rssBytes);
      rss.push(result);
      progress(` ${result.maxRssMB.toFixed(1)} MB peak, ${result.megabytesPerSecond.toFixed(0)} MB/s\n`);
    }
  } catch (error) {
    problems.push(error instanceof BenchError ? error.message : error instanceof Error ? error.stack ?? error.message : String(error));
  } finally {
    await client.close();
    await server.close();
  }

  const rows = compare(results, settings);
  if (results.length > 0) printTable(rows);
  if (cacheAtEnd !== undefined) {
    process.stdout.write(`Keyhold cache at the end of the timed cases: ${JSON.stringify(cacheAtEnd)}\n`);
    if (cacheAfterWarmUp !== undefined && cacheAtEnd.misses !== cacheAfterWarmUp.misses) {
      process.stdout.write('  (misses grew: some timed Keyhold messages called the server)\n');
    }
  }
  for (const r of rss) {
    process.stdout.write(
      `Peak RSS, ${sizeLabel(r.bytes)} through Keyhold encrypt → decrypt (${r.flavour}): ${r.maxRssMB.toFixed(1)} MB ` +
        `(${r.maxRssBeforeMB.toFixed(1)} MB before the stream${r.vmHwmMB === undefined ? '' : `; VmHWM ${r.vmHwmMB.toFixed(1)} MB`}), ` +
        `${r.megabytesPerSecond.toFixed(0)} MB/s end to end\n`,
    );
  }
  const goals = evaluateGoals(rows, rss);
  printGoals(goals);
  const loadAfter = loadavg();
  process.stdout.write(
    `\nLoad average at the end: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}; ` +
      `the run took ${((performance.now() - started) / 1000).toFixed(0)} s.\n`,
  );

  const file = writeResults({
    generatedAt: new Date().toISOString(),
    ok: problems.length === 0,
    environment: {
      sdkRevision: revision,
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model,
      loadAverage: [...loads, { phase: 'end', loadAverage: loadAfter }],
    },
    settings: { ...settings, chunkBytes: CHUNK_BYTES, awsSuite: 'ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY', context: CONTEXT },
    goals,
    comparisons: rows.map((r) => ({
      size: r.size,
      operation: r.operation,
      mode: r.mode,
      concurrency: r.concurrency,
      keyholdToAws: r.keyholdToAws,
      keyholdToNode: r.keyholdToNode,
      keyholdToAwsByCpu: r.keyholdToAwsByCpu,
    })),
    measurements: results,
    rss,
    keyholdCache: { afterWarmUp: cacheAfterWarmUp, atEnd: cacheAtEnd },
    problems,
  });
  process.stdout.write(`Results written to ${relative(process.cwd(), file) || file}\n`);
  if (problems.length > 0) {
    process.stderr.write(`\nbench:sdk: FAILED\n  - ${problems.join('\n  - ')}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench:sdk: ${error instanceof BenchError ? error.message : error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(error instanceof BenchError ? 2 : 1);
  },
);
