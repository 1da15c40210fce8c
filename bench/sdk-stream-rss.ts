/**
 * The child process of `npm run bench:sdk` that measures peak memory: it streams KEYHOLD_BENCH_BYTES of generated
 * data through `@keyhold/sdk` encrypt → decrypt into a sink that discards it, checks what comes out, and prints one
 * JSON line with its peak RSS (process.resourceUsage().maxRSS, and VmHWM from /proc where there is one). It runs in
 * a process of its own so that nothing the runner holds (its 64 MiB buffers, the Keyhold server) counts, and the
 * runner starts it through a shell so that it does not inherit the runner's peak either. It loads only the SDK.
 *
 * Input, from the environment the runner sets: KEYHOLD_BENCH_URL, KEYHOLD_BENCH_TOKEN, KEYHOLD_BENCH_KEY,
 * KEYHOLD_BENCH_CONTEXT (JSON), KEYHOLD_BENCH_BYTES, KEYHOLD_BENCH_FLAVOUR (`node-stream` or `web-stream`).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ReadableStream, WritableStream } from 'node:stream/web';
import { apiToken, createClient } from '@keyhold/sdk';

/** What a file or socket read hands on. */
const CHUNK_BYTES = 64 * 1024;
/** The sink checks one byte in every this many. */
const CHECK_STRIDE = 4096;

/** MB (10^6 bytes, as everywhere in the benchmark's output) from KiB, the unit of maxRSS and of /proc. */
const megabytes = (kibibytes: number): number => (kibibytes * 1024) / 1e6;

/** The peak RSS of this process image, from /proc (Linux; "kB" there means KiB); undefined elsewhere. */
function vmHwmMB(): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match === null ? undefined : megabytes(Number(match[1]));
  } catch {
    return undefined;
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set (this script is run by bench/sdk.ts)`);
  return value;
}

/**
 * Chunk `index` of the input: a fresh buffer, as a reader would allocate, filled with one byte value so the sink can
 * check positions without holding anything.
 */
function chunk(index: number, bytes: number): Buffer {
  const length = Math.min(CHUNK_BYTES, bytes - index * CHUNK_BYTES);
  return Buffer.alloc(length, index & 0xff);
}

/** Counts bytes and checks every CHECK_STRIDE-th one against what `chunk` wrote at that position. */
class Checker {
  total = 0;

  check(bytes: Uint8Array): void {
    const first = Math.ceil(this.total / CHECK_STRIDE) * CHECK_STRIDE;
    for (let position = first; position < this.total + bytes.length; position += CHECK_STRIDE) {
      if (bytes[position - this.total] !== (Math.floor(position / CHUNK_BYTES) & 0xff)) {
        throw new Error(`byte ${position} came out altered`);
      }
    }
    this.total += bytes.length;
  }
}

async function main(): Promise<void> {
  const url = required('KEYHOLD_BENCH_URL');
  const keyName = required('KEYHOLD_BENCH_KEY');
  const context = JSON.parse(required('KEYHOLD_BENCH_CONTEXT')) as Record<string, string>;
  const bytes = Number(required('KEYHOLD_BENCH_BYTES'));
  const flavour = required('KEYHOLD_BENCH_FLAVOUR');
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new Error('KEYHOLD_BENCH_BYTES must be a positive integer');
  if (flavour !== 'node-stream' && flavour !== 'web-stream') throw new Error('KEYHOLD_BENCH_FLAVOUR must be node-stream or web-stream');

  const client = createClient({ url, auth: apiToken(required('KEYHOLD_BENCH_TOKEN')) });
  const chunks = Math.ceil(bytes / CHUNK_BYTES);
  const checker = new Checker();
  const maxRssBeforeMB = megabytes(process.resourceUsage().maxRSS);
  const start = performance.now();
  try {
    if (flavour === 'node-stream') {
      await pipeline(
        Readable.from((function* () {
          for (let index = 0; index < chunks; index++) yield chunk(index, bytes);
        })(), { objectMode: false }),
        client.encryptNodeStream(keyName, { context }),
        client.decryptNodeStream({ expectedContext: context }),
        new Writable({
          write(data: Buffer, _encoding, done) {
            try {
              checker.check(data);
              done();
            } catch (error) {
              done(error as Error);
            }
          },
        }),
      );
    } else {
      let next = 0;
      await new ReadableStream<Uint8Array>({
        pull(controller) {
          if (next < chunks) controller.enqueue(chunk(next++, bytes));
          else controller.close();
        },
      })
        .pipeThrough(client.encryptStream(keyName, { context }))
        .pipeThrough(client.decryptStream({ expectedContext: context }))
        .pipeTo(new WritableStream<Uint8Array>({ write: (data) => checker.check(data) }));
    }
  } finally {
    await client.close();
  }
  const seconds = (performance.now() - start) / 1000;
  if (checker.total !== bytes) throw new Error(`${checker.total} bytes came out of ${bytes}`);
  const memory = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({
    flavour,
    bytes,
    seconds,
    megabytesPerSecond: bytes / 1e6 / seconds,
    maxRssBeforeMB,
    maxRssMB: megabytes(process.resourceUsage().maxRSS),
    vmHwmMB: vmHwmMB(),
    heapUsedAfterMB: memory.heapUsed / 1e6,
    arrayBuffersAfterMB: memory.arrayBuffers / 1e6,
  })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
