import forge from 'node-forge';

/**
 * The key usage bits of RFC 5280 §4.2.1.3, in bit order: `digitalSignature` is bit 0, the most significant bit of
 * the first content octet.
 */
export const KEY_USAGES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

export type KeyUsage = (typeof KEY_USAGES)[number];

/** What the SVID rules need from a certificate's extensions, read from its DER encoding. */
export interface CertificateExtensions {
  /** Every `uniformResourceIdentifier` in the subject alternative name, in order (RFC 5280 §4.2.1.6). */
  readonly uris: readonly string[];
  /** The `cA` flag of the basic constraints (RFC 5280 §4.2.1.9); false when the extension is absent. */
  readonly ca: boolean;
  /** The key usage bits that are set (RFC 5280 §4.2.1.3); undefined when the extension is absent. */
  readonly keyUsage: ReadonlySet<KeyUsage> | undefined;
}

/** The certificate's DER is not shaped as RFC 5280 says. The message names the part, never the content. */
export class MalformedCertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedCertificateError';
  }
}

const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_KEY_USAGE = '2.5.29.15';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';

// X.690 identifier octets, spelled out here rather than read from forge's enums.
const UNIVERSAL = 0x00;
const CONTEXT_SPECIFIC = 0x80;
const BOOLEAN = 1;
const BIT_STRING = 3;
const OCTET_STRING = 4;
const OBJECT_IDENTIFIER = 6;
const SEQUENCE = 16;
/** `extensions [3] EXPLICIT Extensions` in TBSCertificate (RFC 5280 §4.1). */
const EXTENSIONS_TAG = 3;
/** `uniformResourceIdentifier [6] IA5String` in GeneralName (RFC 5280 §4.2.1.6). */
const URI_TAG = 6;

/** A certificate nests a handful of levels deep (the subject name is the deepest); anything deeper is not one. */
const MAX_DEPTH = 32;

type Asn1 = forge.asn1.Asn1;

/**
 * forge's typings only know the boolean form. `decodeBitStrings` must be off: forge would otherwise try to read the
 * content of every BIT STRING as ASN.1, and a key usage value can happen to parse as a tagged element.
 */
const fromDer = forge.asn1.fromDer as unknown as (
  bytes: forge.util.ByteStringBuffer,
  options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean; maxDepth: number },
) => Asn1;

const PARSE_OPTIONS = { strict: true, parseAllBytes: true, decodeBitStrings: false, maxDepth: MAX_DEPTH };

/** Parses one DER element from a binary string (forge's byte representation); trailing bytes are refused. */
function parse(der: string, what: string): Asn1 {
  try {
    return fromDer(forge.util.createBuffer(der), PARSE_OPTIONS);
  } catch {
    throw new MalformedCertificateError(`${what} is not valid DER`);
  }
}

function isUniversal(node: Asn1 | undefined, type: number, constructed: boolean): node is Asn1 {
  return node !== undefined && node.tagClass === UNIVERSAL && node.type === type && node.constructed === constructed;
}

function children(node: Asn1, what: string): Asn1[] {
  if (node.constructed && Array.isArray(node.value)) return node.value;
  throw new MalformedCertificateError(`${what} is not constructed`);
}

function bytes(node: Asn1, what: string): string {
  if (!node.constructed && typeof node.value === 'string') return node.value;
  throw new MalformedCertificateError(`${what} is not primitive`);
}

function sequence(node: Asn1 | undefined, what: string): Asn1[] {
  if (!isUniversal(node, SEQUENCE, true)) throw new MalformedCertificateError(`${what} is not a SEQUENCE`);
  return children(node, what);
}

/** GeneralNames (RFC 5280 §4.2.1.6): only the URIs matter; other name forms are allowed and skipped. */
function readUris(value: Asn1): string[] {
  const names = sequence(value, 'subjectAltName');
  if (names.length === 0) throw new MalformedCertificateError('subjectAltName is empty');
  const uris: string[] = [];
  for (const name of names) {
    if (name.tagClass !== CONTEXT_SPECIFIC || name.type !== URI_TAG) continue;
    const uri = bytes(name, 'a URI name');
    // IA5String is seven-bit ASCII (X.680 §41); a byte above that is not a URI at all.
    if (!/^[\x00-\x7f]*$/.test(uri)) throw new MalformedCertificateError('a URI name is not IA5String');
    uris.push(uri);
  }
  return uris;
}

/** KeyUsage ::= BIT STRING (RFC 5280 §4.2.1.3); the first content octet counts the unused trailing bits. */
function readKeyUsage(value: Asn1): Set<KeyUsage> {
  if (!isUniversal(value, BIT_STRING, false)) throw new MalformedCertificateError('keyUsage is not a BIT STRING');
  const content = bytes(value, 'keyUsage');
  const unused = content.charCodeAt(0);
  if (content.length === 0 || unused > 7 || (content.length === 1 && unused !== 0)) {
    throw new MalformedCertificateError('keyUsage has a bad unused-bits count');
  }
  const set = new Set<KeyUsage>();
  KEY_USAGES.forEach((usage, bit) => {
    const octet = 1 + (bit >> 3);
    if (octet < content.length && (content.charCodeAt(octet) & (0x80 >> (bit & 7))) !== 0) set.add(usage);
  });
  return set;
}

/** BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL } (§4.2.1.9). */
function readCa(value: Asn1): boolean {
  const [first] = sequence(value, 'basicConstraints');
  if (!isUniversal(first, BOOLEAN, false)) return false;
  const flag = bytes(first, 'cA');
  if (flag.length !== 1) throw new MalformedCertificateError('cA is not one octet');
  // DER encodes TRUE as 0xFF; any non-zero octet is read as true, so an odd encoding errs towards "CA".
  return flag.charCodeAt(0) !== 0;
}

/**
 * Reads the subject alternative name URIs, the basic constraints and the key usage of a DER-encoded certificate by
 * walking Certificate → tbsCertificate → extensions (RFC 5280 §4.1) with forge's ASN.1 parser. The public key is
 * never parsed, so this works for EC certificates, which forge's certificate reader refuses. It only reads: the
 * signature and the chain are the TLS stack's business. Throws {@link MalformedCertificateError} for anything not
 * shaped as RFC 5280 says, including an extension that appears twice (§4.2).
 */
export function readCertificateExtensions(der: Uint8Array): CertificateExtensions {
  const binary = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('binary');
  const certificate = sequence(parse(binary, 'the certificate'), 'Certificate');
  const tbs = sequence(certificate[0], 'tbsCertificate');
  const wrappers = tbs.filter((field) => field.tagClass === CONTEXT_SPECIFIC && field.type === EXTENSIONS_TAG);
  if (wrappers.length > 1) throw new MalformedCertificateError('tbsCertificate has two extension lists');
  const [wrapper] = wrappers;
  const extensions = wrapper === undefined ? [] : sequence(children(wrapper, 'extensions')[0], 'Extensions');

  const seen = new Set<string>();
  let uris: string[] = [];
  let ca = false;
  let keyUsage: Set<KeyUsage> | undefined;
  for (const extension of extensions) {
    // Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    const fields = sequence(extension, 'Extension');
    const [id] = fields;
    const octets = fields[fields.length - 1];
    const shaped = fields.length >= 2 && fields.length <= 3 && isUniversal(id, OBJECT_IDENTIFIER, false);
    if (!shaped || !isUniversal(octets, OCTET_STRING, false)) {
      throw new MalformedCertificateError('an Extension is not { extnID, critical, extnValue }');
    }
    const oid = forge.asn1.derToOid(bytes(id, 'extnID'));
    if (seen.has(oid)) throw new MalformedCertificateError(`extension ${oid} appears twice`);
    seen.add(oid);
    if (oid === OID_SUBJECT_ALT_NAME) uris = readUris(parse(bytes(octets, oid), 'subjectAltName'));
    else if (oid === OID_KEY_USAGE) keyUsage = readKeyUsage(parse(bytes(octets, oid), 'keyUsage'));
    else if (oid === OID_BASIC_CONSTRAINTS) ca = readCa(parse(bytes(octets, oid), 'basicConstraints'));
  }
  return Object.freeze({ uris: Object.freeze(uris), ca, keyUsage });
}
