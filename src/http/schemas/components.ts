import type { TSchema } from '@sinclair/typebox';
import { EncryptionContext, KeyName, Problem } from './common.js';
import { AuditRecordView } from './audit.js';
import { Ciphertext, CiphertextResult, DataKeyResult, DecryptResult } from './crypto.js';
import { KeyEventData, ResyncEventData } from './events.js';
import { Key, KeySummary, KeyVersion, Labels } from './keys.js';
import { Policy, PolicyStatement } from './policies.js';
import { Token } from './tokens.js';
import { AwsCredential } from './aws-credentials.js';

/**
 * The schemas with an `$id`, registered with `app.addSchema` before any route refers to them (with `ref()` from
 * common.ts), so `openapi.yaml` lists each once under components and operations carry a `$ref` instead of a copy.
 * A reference to a schema missing here fails when the app is built. The event data schemas are referred to by no route (an event stream has no
 * JSON body), but registering them puts them in `openapi.yaml` for clients.
 */
export const SHARED_SCHEMAS: readonly TSchema[] = [
  Problem,
  KeyName,
  EncryptionContext,
  Ciphertext,
  DataKeyResult,
  CiphertextResult,
  DecryptResult,
  Labels,
  KeyVersion,
  Key,
  KeySummary,
  PolicyStatement,
  Policy,
  Token,
  AwsCredential,
  AuditRecordView,
  KeyEventData,
  ResyncEventData,
];
