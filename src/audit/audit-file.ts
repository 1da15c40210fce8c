import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { StartupError } from '../errors.js';
import type { AuditKeyMaterial } from './audit-key.js';
import { parseJsonLine } from './audit-record.js';
import { reportChain, verdictOf, type VerificationReport, type VerifyOptions } from './audit-log.js';
import { ChainVerifier } from './chain.js';
import { isHeadStatementJson, isLaterStatement, parseHeadStatement, type HeadStatement } from './head-statement.js';

/** The lines of a JSON-lines file, numbered from 1, read as a stream so a large file stays small in memory. */
async function* numberedLines(path: string): AsyncGenerator<{ number: number; text: string }> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let number = 0;
  try {
    for await (const text of lines) {
      number += 1;
      if (text !== '') yield { number, text };
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string') throw new StartupError(`${path} cannot be read (${code})`);
    throw error;
  }
}

function fileError(path: string, line: number, error: unknown): StartupError {
  return new StartupError(`${path} line ${line} is neither an audit record nor a head statement: ${(error as Error).message}`);
}

/** A statement as the log carries it: the `auditHead` field of a JSON log line. */
function loggedStatement(value: unknown): unknown {
  return typeof value === 'object' && value !== null && 'auditHead' in value ? value.auditHead : value;
}

/**
 * The latest head statement per chain in a `KEYHOLD_AUDIT_FILE` or in the server's JSON log. Other lines (records,
 * other log lines, plain text a captured stdout holds) are skipped. A statement that does not parse is refused with
 * its line number; whether one is genuine is checked against the chain, where a forged one is `checkpoint-invalid`.
 */
export async function readWitness(path: string): Promise<Map<string, HeadStatement>> {
  const latest = new Map<string, HeadStatement>();
  for await (const { number, text } of numberedLines(path)) {
    let value: unknown;
    try {
      value = loggedStatement(JSON.parse(text));
    } catch {
      // A line of the log that is not JSON, such as `Keyhold listening on …` in a captured stdout.
      continue;
    }
    if (!isHeadStatementJson(value)) continue;
    let statement: HeadStatement;
    try {
      statement = parseHeadStatement(value);
    } catch (error) {
      throw fileError(path, number, error);
    }
    const known = latest.get(statement.replicaId);
    if (known === undefined || isLaterStatement(statement, known)) latest.set(statement.replicaId, statement);
  }
  return latest;
}

export interface VerifyFileOptions extends Pick<VerifyOptions, 'acceptUnsealed'> {
  readonly auditKey: AuditKeyMaterial;
  readonly now: Date;
}

/**
 * Verifies a shipped JSON-lines audit file on its own, with no audit table: each chain's records from its first
 * (the file must hold every chain from its start; one that begins later is reported `missing` at 1), against the
 * chain's latest head statement in the file, which also says whether it was sealed or is live. It needs the audit
 * key, and nothing else: the MACs are symmetric. Two passes: the statements first, then the records.
 */
export async function verifyAuditFile(path: string, options: VerifyFileOptions): Promise<VerificationReport> {
  const latest = await readWitness(path);
  const verifiers = new Map<string, ChainVerifier>();
  const verifierOf = (replicaId: string): ChainVerifier => {
    let verifier = verifiers.get(replicaId);
    if (verifier === undefined) {
      const statement = latest.get(replicaId);
      verifier = new ChainVerifier({ auditKey: options.auditKey, replicaId, statements: statement === undefined ? [] : [statement] });
      verifiers.set(replicaId, verifier);
    }
    return verifier;
  };
  for (const replicaId of latest.keys()) verifierOf(replicaId);
  for await (const { number, text } of numberedLines(path)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
      if (isHeadStatementJson(value)) continue;
      const record = parseJsonLine(text);
      verifierOf(record.replicaId).push(record);
    } catch (error) {
      throw fileError(path, number, error);
    }
  }
  const chains = [...verifiers.keys()].sort().map((replicaId) => {
    const statement = latest.get(replicaId);
    const evidence = { replicaId, heartbeat: statement, witnessed: statement, checkpointed: false };
    return reportChain(evidence, verifiers.get(replicaId)!.finish(), options.now, options.acceptUnsealed);
  });
  return verdictOf(chains);
}
