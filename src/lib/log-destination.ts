import type { DestinationStream } from 'pino';
// A CommonJS module: its types describe the default import as the module, whose `SonicBoom` is the class.
import sonicBoom from 'sonic-boom';

/** The server's log destination: a pino stream that can say when what it was given has been written. */
export interface LogDestination extends DestinationStream {
  /** Resolves once every line written so far has reached standard output, or at once when logging has stopped. */
  settled(): Promise<void>;
}

/**
 * Standard output, written asynchronously as pino's default destination writes it (sonic-boom), so a slow log
 * reader never blocks a request, but with no synchronous flush at exit. pino's default registers one, and
 * sonic-boom's `flushSync` retries a failed write every 100 ms without end: with the reader of stdout gone (EPIPE),
 * `process.exit` never returned and `KEYHOLD_SHUTDOWN_TIMEOUT_MS` never fired. The server waits for {@link
 * LogDestination.settled} within its own bound instead. A reader that is gone (EPIPE) stops logging, as in pino.
 */
export function stdoutLogDestination(): LogDestination {
  const stream = new sonicBoom.SonicBoom({ fd: 1, sync: false, minLength: 0 });
  // sonic-boom emits 'drain' when a write finds nothing more to write; every write clears this until then.
  let idle = true;
  let stopped = false;
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const resolve of waiters.splice(0)) resolve();
  };
  stream.on('drain', () => {
    idle = true;
    wake();
  });
  stream.on('error', (error: NodeJS.ErrnoException) => {
    stopped = true;
    wake();
    // Nobody reads the log any more; anything else is a fault of the process, surfaced as pino would.
    if (error.code !== 'EPIPE') throw error;
  });
  return {
    write(line: string): void {
      if (stopped) return;
      idle = false;
      stream.write(line);
    },
    settled(): Promise<void> {
      if (idle || stopped) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}
