import { createHash, timingSafeEqual } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Principal } from '../context/principal.js';
import type { Clock } from '../lib/clock.js';
import { AwsAuthenticationError } from './aws-errors.js';
import type { SigningCredential, SigningCredentialSource } from './signing-credential.js';

/** A request as received, before its body is parsed: what a signature covers. */
export interface ReceivedRequest {
  readonly method: string;
  /** The path as sent, without the query. */
  readonly path: string;
  /** The query parameters, decoded. */
  readonly query: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Header names in lower case (Node's `IncomingHttpHeaders`). */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly body: Buffer;
}

export interface SigV4VerifierOptions {
  readonly credentials: SigningCredentialSource;
  /** The region every request must be signed for. */
  readonly region: string;
  /** The service in the credential scope: `kms`. */
  readonly service: string;
  readonly clock: Clock;
  /** How far a request's time may be from ours; AWS allows 5 minutes. */
  readonly maxSkewMs?: number;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const SIGNED_HEADER = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/**
 * Headers a verifiable request must sign: the host, its time, and the operation, which the body does not name:
 * unsigned, `DisableKey` could be turned into `ScheduleKeyDeletion`. The host is signed as the client named it and not
 * compared with any name of ours: as against AWS, a request may be replayed within the window to any replica that
 * shares the store.
 */
const REQUIRED_SIGNED_HEADERS = ['host', 'x-amz-date', 'x-amz-target'] as const;
/** Longer than any header an AWS SDK sends; refused before any parsing. */
const MAX_AUTHORIZATION_LENGTH = 4096;
const SHA256_HEX_OF = (body: Buffer): string => createHash('sha256').update(body).digest('hex');

const INVALID_SIGNATURE =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.';
const INVALID_TOKEN = 'The security token included in the request is invalid.';

interface ParsedAuthorization {
  readonly accessKeyId: string;
  readonly date: string;
  readonly region: string;
  readonly service: string;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
}

function incomplete(reason: string, message: string): AwsAuthenticationError {
  return new AwsAuthenticationError('IncompleteSignatureException', reason, message);
}

/** Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`. */
export function parseAuthorization(header: string): ParsedAuthorization {
  if (header.length > MAX_AUTHORIZATION_LENGTH || !header.startsWith(`${ALGORITHM} `)) {
    throw incomplete('malformed-signature', `Authorization header requires the ${ALGORITHM} algorithm.`);
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(ALGORITHM.length + 1).split(',')) {
    const trimmed = part.trim();
    const equals = trimmed.indexOf('=');
    if (equals <= 0 || fields.has(trimmed.slice(0, equals))) {
      throw incomplete('malformed-signature', 'Authorization header is not well formed.');
    }
    fields.set(trimmed.slice(0, equals), trimmed.slice(equals + 1));
  }
  const credential = fields.get('Credential')?.split('/');
  const signedHeaders = fields.get('SignedHeaders')?.split(';');
  const signature = fields.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined || fields.size !== 3) {
    throw incomplete('malformed-signature', "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.");
  }
  const [accessKeyId, date, region, service, terminator] = credential;
  if (credential.length !== 5 || terminator !== 'aws4_request' || accessKeyId === undefined || !ACCESS_KEY_ID.test(accessKeyId)) {
    throw incomplete('malformed-signature', 'Credential must have the form ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request.');
  }
  if (!SIGNATURE.test(signature) || signedHeaders.some((name) => !SIGNED_HEADER.test(name))) {
    throw incomplete('malformed-signature', 'Authorization header is not well formed.');
  }
  return { accessKeyId, date: date ?? '', region: region ?? '', service: service ?? '', signedHeaders, signature };
}

function headerValue(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.join(',');
}

function parseAmzDate(text: string): Date | undefined {
  const match = AMZ_DATE.exec(text);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Refuses 20261340T…: Date.UTC would roll it over into a valid but different time.
  return date.toISOString().replace(/[-:]|\.\d{3}/g, '') === text ? date : undefined;
}

/**
 * Verifies AWS Signature Version 4 on a request by signing it again with the access key's secret, as AWS does:
 * `@smithy/signature-v4` computes the signature over exactly the headers the client signed, and the two are
 * compared in constant time. The body's hash is computed here, never taken from `x-amz-content-sha256`, which the
 * signer would otherwise trust. A request more than five minutes from this server's clock is refused, so a captured
 * request can be replayed only within that window, as against AWS.
 */
export class SigV4Verifier {
  readonly #credentials: SigningCredentialSource;
  readonly #region: string;
  readonly #service: string;
  readonly #clock: Clock;
  readonly #maxSkewMs: number;
  /** One signer per secret, which also caches the day's signing key; dropped when the credential object changes. */
  readonly #signers = new WeakMap<SigningCredential, SignatureV4>();

  constructor(options: SigV4VerifierOptions) {
    this.#credentials = options.credentials;
    this.#region = options.region;
    this.#service = options.service;
    this.#clock = options.clock;
    this.#maxSkewMs = options.maxSkewMs ?? 5 * 60_000;
  }

  /** Returns the principal the request's access key is bound to, or throws an {@link AwsAuthenticationError}. */
  async verify(request: ReceivedRequest): Promise<Principal> {
    const authorization = headerValue(request.headers.authorization);
    if (authorization === undefined) {
      throw new AwsAuthenticationError('MissingAuthenticationTokenException', 'missing', 'Missing Authentication Token');
    }
    const parsed = parseAuthorization(authorization);
    const signed = new Set(parsed.signedHeaders);
    for (const name of REQUIRED_SIGNED_HEADERS) {
      if (!signed.has(name)) throw incomplete('unsigned-header', `The ${name} header must be signed.`);
    }
    for (const name of signed) {
      if (request.headers[name] === undefined) throw incomplete('unsigned-header', `The signed header ${name} is missing.`);
    }
    const amzDate = headerValue(request.headers['x-amz-date']) ?? '';
    const signingDate = parseAmzDate(amzDate);
    if (signingDate === undefined) throw incomplete('malformed-signature', 'X-Amz-Date must have the form YYYYMMDDTHHMMSSZ.');
    if (parsed.date !== amzDate.slice(0, 8)) {
      throw new AwsAuthenticationError('InvalidSignatureException', 'wrong-scope', `Credential should be scoped to a valid date: ${amzDate.slice(0, 8)}.`);
    }
    if (parsed.region !== this.#region) {
      throw new AwsAuthenticationError(
        'InvalidSignatureException',
        'wrong-scope',
        `Credential should be scoped to a valid region: '${this.#region}'.`,
      );
    }
    if (parsed.service !== this.#service) {
      throw new AwsAuthenticationError('InvalidSignatureException', 'wrong-scope', `Credential should be scoped to correct service: '${this.#service}'.`);
    }
    const now = this.#clock.now();
    if (Math.abs(now.getTime() - signingDate.getTime()) > this.#maxSkewMs) {
      // AWS's wording; SDKs see InvalidSignatureException with our Date header and correct their clock offset.
      throw new AwsAuthenticationError(
        'InvalidSignatureException',
        'request-time-skewed',
        `Signature expired or not yet valid: ${amzDate} is more than ${this.#maxSkewMs / 60_000} minutes from the server's time.`,
      );
    }
    if (request.headers['x-amz-security-token'] !== undefined) {
      // Keyhold issues long-term access keys only; a session token belongs to some other issuer's credentials.
      throw new AwsAuthenticationError('UnrecognizedClientException', 'session-token', INVALID_TOKEN);
    }

    const credential = await this.#credentials.signingCredential(parsed.accessKeyId);
    if (credential === undefined) throw new AwsAuthenticationError('UnrecognizedClientException', 'unknown-access-key', INVALID_TOKEN);

    const expected = await this.#sign(credential, request, parsed, signingDate);
    const given = Buffer.from(parsed.signature, 'hex');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new AwsAuthenticationError('InvalidSignatureException', 'invalid-signature', INVALID_SIGNATURE);
    }
    return credential.principal;
  }

  async #sign(credential: SigningCredential, request: ReceivedRequest, parsed: ParsedAuthorization, signingDate: Date): Promise<Buffer> {
    let signer = this.#signers.get(credential);
    if (signer === undefined) {
      signer = new SignatureV4({
        credentials: { accessKeyId: credential.accessKeyId, secretAccessKey: credential.secretAccessKey },
        region: this.#region,
        service: this.#service,
        sha256: Hash.bind(null, 'sha256'),
        applyChecksum: false,
      });
      this.#signers.set(credential, signer);
    }
    const headers: Record<string, string> = {};
    for (const name of parsed.signedHeaders) headers[name] = headerValue(request.headers[name]) ?? '';
    // The signer trusts this header as the body's hash; only the hash of the body received may stand there.
    const bodyHash = SHA256_HEX_OF(request.body);
    if (headers['x-amz-content-sha256'] !== undefined) headers['x-amz-content-sha256'] = bodyHash;
    const query: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(request.query)) {
      if (value !== undefined) query[name] = typeof value === 'string' ? value : [...value];
    }
    // The signature covers the Host header as received (in `headers`), not a host name of our own.
    const signedRequest = await signer.sign(
      { method: request.method, protocol: 'https:', hostname: '', path: request.path, query, headers, body: request.body },
      { signingDate, signableHeaders: new Set(parsed.signedHeaders) },
    );
    const authorization = (signedRequest.headers as Record<string, string>).authorization ?? '';
    const signature = /Signature=([0-9a-f]{64})$/.exec(authorization)?.[1];
    return Buffer.from(signature ?? '', 'hex');
  }
}
