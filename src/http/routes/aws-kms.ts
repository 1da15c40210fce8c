import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { Static, TObject } from '@sinclair/typebox';
import { AwsKmsError } from '../../aws-kms/aws-errors.js';
import type { AwsKmsService } from '../../aws-kms/aws-kms-service.js';
import { callerOf, type Caller } from '../../context/caller.js';
import type { EncryptionContext } from '../../crypto/encryption-context.js';
import type { PolicyStore } from '../../policy/policy-store.js';
import { AWS_JSON_CONTENT_TYPE, sendAwsError } from '../plugins/aws-json.js';
import { jsonBufferParser } from '../plugins/json-body.js';
import {
  CreateKeyInput,
  DecryptInput,
  EnableKeyRotationInput,
  EncryptInput,
  GenerateDataKeyInput,
  KeyIdInput,
  ListAliasesInput,
  ListKeysInput,
  ReEncryptInput,
  ScheduleKeyDeletionInput,
} from '../schemas/aws-kms.js';

const TARGET_PREFIX = 'TrentService.';

interface Operation<T extends TObject> {
  readonly check: TypeCheck<T>;
  readonly run: (service: AwsKmsService, caller: Caller, input: Static<T>) => Promise<object>;
  /** The encryption context whose keys the audit record lists. */
  readonly context?: (input: Static<T>) => EncryptionContext | undefined;
}

function operation<T extends TObject>(
  schema: T,
  run: Operation<T>['run'],
  context?: Operation<T>['context'],
): Operation<TObject> {
  return { check: TypeCompiler.Compile(schema), run, context } as unknown as Operation<TObject>;
}

const blob = (base64: string): Buffer => Buffer.from(base64, 'base64');

/** Every operation the endpoint serves, by its name in `X-Amz-Target: TrentService.<name>`. */
const OPERATIONS: Readonly<Record<string, Operation<TObject>>> = {
  GenerateDataKey: operation(GenerateDataKeyInput, (s, c, i) => s.generateDataKey(c, i, true), (i) => i.EncryptionContext),
  GenerateDataKeyWithoutPlaintext: operation(GenerateDataKeyInput, (s, c, i) => s.generateDataKey(c, i, false), (i) => i.EncryptionContext),
  Encrypt: operation(EncryptInput, (s, c, i) => s.encrypt(c, { ...i, Plaintext: blob(i.Plaintext) }), (i) => i.EncryptionContext),
  Decrypt: operation(DecryptInput, (s, c, i) => s.decrypt(c, { ...i, CiphertextBlob: blob(i.CiphertextBlob) }), (i) => i.EncryptionContext),
  ReEncrypt: operation(
    ReEncryptInput,
    (s, c, i) => s.reEncrypt(c, { ...i, CiphertextBlob: blob(i.CiphertextBlob) }),
    (i) => ({ ...i.SourceEncryptionContext, ...i.DestinationEncryptionContext }),
  ),
  DescribeKey: operation(KeyIdInput, (s, c, i) => s.describeKey(c, i)),
  ListKeys: operation(ListKeysInput, (s, c, i) => s.listKeys(c, i)),
  ListAliases: operation(ListAliasesInput, (s, c, i) => s.listAliases(c, i)),
  CreateKey: operation(CreateKeyInput, (s, c, i) => s.createKey(c, i)),
  EnableKeyRotation: operation(EnableKeyRotationInput, (s, c, i) => s.enableKeyRotation(c, i)),
  DisableKeyRotation: operation(KeyIdInput, (s, c, i) => s.disableKeyRotation(c, i)),
  GetKeyRotationStatus: operation(KeyIdInput, (s, c, i) => s.getKeyRotationStatus(c, i)),
  EnableKey: operation(KeyIdInput, (s, c, i) => s.enableKey(c, i)),
  DisableKey: operation(KeyIdInput, (s, c, i) => s.disableKey(c, i)),
  ScheduleKeyDeletion: operation(ScheduleKeyDeletionInput, (s, c, i) => s.scheduleKeyDeletion(c, i)),
  CancelKeyDeletion: operation(KeyIdInput, (s, c, i) => s.cancelKeyDeletion(c, i)),
};

/** The names AWS SDKs send, for the audit record; anything else is recorded as `aws-kms`. */
export const AWS_KMS_OPERATIONS: readonly string[] = Object.keys(OPERATIONS);

function validationError(check: TypeCheck<TObject>, input: unknown): AwsKmsError {
  const first = check.Errors(input).First();
  const member = first === undefined ? '' : first.path.split('/').filter(Boolean).join('.');
  return new AwsKmsError(
    'ValidationException',
    'KH_ERR_VALIDATION',
    first === undefined ? 'The request is not valid' : `1 validation error detected: Value at '${member}' failed to satisfy constraint: ${first.message}`,
  );
}

/**
 * Writes an operation's output in the AWS JSON protocol: blobs as base64. A plaintext is zeroed once it is encoded;
 * its base64 string is the only copy left, and it is sent.
 */
function serialize(output: object): string {
  const wire: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(output)) {
    if (Buffer.isBuffer(value)) {
      wire[name] = value.toString('base64');
      if (name === 'Plaintext') value.fill(0);
    } else {
      wire[name] = value;
    }
  }
  return JSON.stringify(wire);
}

export interface AwsKmsRouteServices {
  readonly awsKms: AwsKmsService;
  readonly policyStore: PolicyStore;
}

/**
 * The AWS-KMS-compatible endpoint at `path`: one POST that serves each operation named by `X-Amz-Target`, for AWS
 * SDKs, the AWS CLI and the AWS Encryption SDK unchanged. The request is authenticated by its SigV4 signature,
 * which covers the body, so after the body is read; then the same services, policies and audit as the native API
 * serve it, and errors are answered in AWS's shape. It is not in the OpenAPI document: AWS's model describes it.
 */
export function awsKmsRoutes(services: AwsKmsRouteServices, path: string): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    const parseJson = jsonBufferParser(app);
    // Kept raw: the signature is over the bytes as sent. JSON 1.0 is what older SDKs of other services send.
    app.addContentTypeParser([AWS_JSON_CONTENT_TYPE, 'application/x-amz-json-1.0'], { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    app.setErrorHandler((error, request, reply) => sendAwsError(error, request, reply));

    const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const target = request.headers['x-amz-target'];
      const name = typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : undefined;
      const op = name === undefined || !Object.hasOwn(OPERATIONS, name) ? undefined : OPERATIONS[name];
      request.auditedAs = { route: op === undefined ? 'aws-kms' : `aws-kms:${name}` };
      if (request.body !== undefined && !Buffer.isBuffer(request.body)) {
        // Parsed as another media type: the bytes the signature covers are gone, so it could never verify.
        throw new AwsKmsError('SerializationException', 'KH_ERR_UNSUPPORTED_MEDIA_TYPE', `The request body must be ${AWS_JSON_CONTENT_TYPE}`);
      }
      const body = request.body ?? Buffer.alloc(0);
      const queryAt = request.url.indexOf('?');
      const principal = await services.awsKms.authenticate({
        method: request.method,
        path: queryAt === -1 ? request.url : request.url.slice(0, queryAt),
        query: request.query as Record<string, string | string[] | undefined>,
        headers: request.headers,
        body,
      });
      request.caller = callerOf(principal);
      if (op === undefined) throw new AwsKmsError('UnknownOperationException', 'KH_ERR_VALIDATION', 'The operation is not supported by this endpoint');
      const input = await new Promise<unknown>((resolve, reject) =>
        parseJson(request, body, (error, value) =>
          error === null ? resolve(value ?? {}) : reject(new AwsKmsError('SerializationException', 'KH_ERR_VALIDATION', error.message)),
        ),
      );
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new AwsKmsError('SerializationException', 'KH_ERR_VALIDATION', 'The request body must be a JSON object');
      }
      services.awsKms.refuseUnsupported(name ?? '', input as Record<string, unknown>);
      if (!op.check.Check(input)) throw validationError(op.check, input);
      request.auditedAs.context = op.context?.(input);
      // Authorisation reads the policy set synchronously: bring it up to date first, as native requests do.
      await services.policyStore.ensureFresh();
      const output = await op.run(services.awsKms, request.caller, input);
      return reply.header('content-type', AWS_JSON_CONTENT_TYPE).header('x-amzn-requestid', request.id).send(serialize(output));
    };
    const options = { config: { signedBody: true, awsJsonErrors: true }, schema: { hide: true } };
    app.post(path, options, handle);
    // boto3 keeps an endpoint's path as given, so `…/aws-kms` (no slash) must answer too; the signature is over it.
    if (path.length > 1) app.post(path.slice(0, -1), options, handle);
  };
}
