/** One dispatched Server-Sent Event. */
export interface ServerSentEvent {
  /** The `event:` field, or `message` when the event has none. */
  readonly type: string;
  /** The `data:` lines, joined with `\n`. */
  readonly data: string;
  /** The stream's last event id when this event was dispatched: what `Last-Event-ID` sends on reconnect. */
  readonly lastEventId: string;
}

/** The longest line kept while waiting for its end; the service's lines are far shorter. */
const MAX_LINE_LENGTH = 64 * 1024;

/**
 * The event-stream interpretation of WHATWG HTML §9.2.6, fed text in chunks of any size: lines end in CRLF, LF or
 * CR (a CRLF split across two chunks counts once), `:` lines are comments, `data:` lines accumulate, a blank line
 * dispatches, and an event without data only updates the last event id. The caller decodes UTF-8 with a streaming
 * decoder, so a character split across chunks arrives whole.
 */
export class SseParser {
  readonly #onEvent: (event: ServerSentEvent) => void;
  #buffer = '';
  /** The previous chunk ended in CR: a LF that starts the next one belongs to that line end. */
  #afterCr = false;
  #first = true;
  #data: string[] = [];
  #type = '';
  #idBuffer = '';
  #lastEventId = '';

  constructor(onEvent: (event: ServerSentEvent) => void, lastEventId = '') {
    this.#onEvent = onEvent;
    this.#idBuffer = lastEventId;
    this.#lastEventId = lastEventId;
  }

  /** The last event id seen, including ids of events without data. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /**
   * Parses a chunk and dispatches the events it completes.
   *
   * @throws RangeError when a line grows past 64 KiB without ending: the peer is not an event stream.
   */
  push(chunk: string): void {
    let text = chunk;
    if (this.#first && text.length > 0) {
      this.#first = false;
      // One leading byte-order mark is allowed and ignored.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.#afterCr && text.startsWith('\n')) text = text.slice(1);
    this.#afterCr = false;
    this.#buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.#buffer.indexOf('\r', start);
      const lf = this.#buffer.indexOf('\n', start);
      if (cr === -1 && lf === -1) break;
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      this.#line(this.#buffer.slice(start, end));
      if (this.#buffer[end] === '\r') {
        if (end + 1 === this.#buffer.length) {
          this.#afterCr = true;
          start = end + 1;
          break;
        }
        start = this.#buffer[end + 1] === '\n' ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
    this.#buffer = this.#buffer.slice(start);
    if (this.#buffer.length > MAX_LINE_LENGTH) throw new RangeError('An event-stream line is longer than 64 KiB');
  }

  #line(line: string): void {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        return;
      case 'event':
        this.#type = value;
        return;
      case 'id':
        // An id with NUL is ignored, as the spec says.
        if (!value.includes('\u0000')) this.#idBuffer = value;
        return;
      default:
        // `retry` and unknown fields: the subscription has its own backoff.
        return;
    }
  }

  #dispatch(): void {
    this.#lastEventId = this.#idBuffer;
    const data = this.#data;
    const type = this.#type;
    this.#data = [];
    this.#type = '';
    if (data.length === 0) return;
    this.#onEvent({ type: type === '' ? 'message' : type, data: data.join('\n'), lastEventId: this.#lastEventId });
  }
}
