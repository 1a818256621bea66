// The cluster's root CA (DESIGN.md §2): ECDSA P-256, CN=shoal-root-ca, 20 years. It signs node
// certificates whose identity comes only from the caller (manager state), never from the CSR.
import { createHash, createPrivateKey, createPublicKey, KeyObject, randomBytes, sign, webcrypto, X509Certificate } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { bytesToBase36 } from "../base/ids.js";
import {
  bitString,
  booleanTrue,
  childrenOf,
  content,
  decodeOid,
  octetString,
  oid,
  readNode,
  sequence,
  set,
  time,
  tlv,
  unsignedInteger,
  utf8String,
  whole,
  TAG_OCTET_STRING,
  TAG_SEQUENCE,
} from "./der.js";
import { verifyCsr, OID_ECDSA_WITH_SHA256 } from "./csr.js";
import { checkIdentityArguments, spiffeUri, type NodeRole } from "./node-identity.js";
import { decodePem, encodePem } from "./pem.js";
import { ECDSA_P256_SHA256, x509 } from "./x509-provider.js";

export const ROOT_CA_COMMON_NAME = "shoal-root-ca";
export const ROOT_CA_VALIDITY_YEARS = 20;
export const HOUR_MS = 60 * 60 * 1000;
export const DEFAULT_NODE_CERT_VALIDITY_MS = 2160 * HOUR_MS;
export const MIN_NODE_CERT_VALIDITY_MS = HOUR_MS;
/** NotBefore is set this far in the past so that peers whose clocks lag still accept a fresh certificate. */
export const NOT_BEFORE_BACKDATE_MS = HOUR_MS;
/** Length of the base-36 root CA digest in join tokens. */
export const CA_DIGEST_LENGTH = 50;

const OID_SUBJECT_KEY_IDENTIFIER = "2.5.29.14";

export interface IssueNodeCertificateArgs {
  /** PEM (or DER) PKCS#10 request; only its public key is used. */
  csrPem: string | Uint8Array;
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  /** The node's security zone; "default" when absent or empty. */
  zone?: string;
  /** Default 90 days (2160 h); at least 1 hour. */
  validityMs?: number;
  clock: Clock;
}

export interface IssuedNodeCertificate {
  certPem: string;
  /** Canonical uppercase hex (see normalizeSerial). */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** SHA-256 of a root CA PEM bundle, as base 36 zero-padded to 50 characters (join tokens, RootCA.caDigest). */
export function caDigestOf(caPem: string | Uint8Array): string {
  return bytesToBase36(createHash("sha256").update(caPem).digest(), CA_DIGEST_LENGTH);
}

/** 16 CSPRNG bytes with the top bit cleared, so the DER INTEGER is positive (RFC 5280 §4.1.2.2). */
export function newSerialBytes(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes;
}

/**
 * Canonical serial text: uppercase hex of whole bytes without leading zero bytes ("0B02"), the form
 * Node's X509Certificate.serialNumber and tls.PeerCertificate.serialNumber give for our serials.
 */
export function normalizeSerial(serial: string): string {
  const stripped = serial.toUpperCase().replace(/^0+/, "");
  return stripped.length % 2 === 1 ? "0" + stripped : stripped === "" ? "00" : stripped;
}

function certInvalid(what: string, reason: string): ShoalError {
  return new ShoalError("CERT_INVALID", `${what} ${reason}`);
}

/** Reads the subject Name (raw DER) and the Subject Key Identifier of a certificate. */
function readSubjectAndKeyId(der: Buffer, spkiDer: Buffer): { subjectDer: Buffer; keyIdentifier: Buffer } {
  const what = "the root CA certificate";
  const cert = readNode(der, 0, "CERT_INVALID", what);
  const tbs = childrenOf(der, cert, "CERT_INVALID", what)[0];
  if (!tbs || tbs.tag !== TAG_SEQUENCE) throw certInvalid(what, "has no TBSCertificate");
  const parts = childrenOf(der, tbs, "CERT_INVALID", what);
  const offset = parts[0]?.tag === 0xa0 ? 1 : 0;
  const subject = parts[offset + 4];
  if (!subject || subject.tag !== TAG_SEQUENCE) throw certInvalid(what, "has no subject");
  let keyIdentifier: Buffer | undefined;
  const extensionsWrapper = parts.find((p) => p.tag === 0xa3);
  if (extensionsWrapper) {
    const [extensions] = childrenOf(der, extensionsWrapper, "CERT_INVALID", what);
    for (const extension of extensions ? childrenOf(der, extensions, "CERT_INVALID", what) : []) {
      const fields = childrenOf(der, extension, "CERT_INVALID", what);
      if (decodeOid(content(der, fields[0]!)) !== OID_SUBJECT_KEY_IDENTIFIER) continue;
      const value = fields[fields.length - 1]!;
      const inner = content(der, value);
      const keyId = readNode(inner, 0, "CERT_INVALID", what);
      if (keyId.tag === TAG_OCTET_STRING) keyIdentifier = content(inner, keyId);
    }
  }
  // RFC 5280 §4.2.1.2 method 1 when the root carries no SKI: SHA-1 of the subjectPublicKey bits.
  if (!keyIdentifier) {
    const spki = readNode(spkiDer, 0, "CERT_INVALID", what);
    const [, keyBits] = childrenOf(spkiDer, spki, "CERT_INVALID", what);
    keyIdentifier = createHash("sha1").update(content(spkiDer, keyBits!).subarray(1)).digest();
  }
  return { subjectDer: whole(der, subject), keyIdentifier };
}

// Extensions that are the same in every node certificate, encoded once.
const ALGORITHM_ECDSA_SHA256 = sequence(oid(OID_ECDSA_WITH_SHA256));
const EXT_BASIC_CONSTRAINTS_NOT_CA = sequence(oid("2.5.29.19"), booleanTrue(), octetString(sequence()));
const EXT_KEY_USAGE_DIGITAL_SIGNATURE = sequence(oid("2.5.29.15"), booleanTrue(), octetString(bitString(Buffer.from([0x80]), 7)));
const EXT_SERVER_AND_CLIENT_AUTH = sequence(
  oid("2.5.29.37"),
  octetString(sequence(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))),
);
const VERSION_3 = tlv(0xa0, unsignedInteger(Buffer.from([2])));
const OID_ORGANIZATION = oid("2.5.4.10");
const OID_ORGANIZATIONAL_UNIT = oid("2.5.4.11");
const OID_COMMON_NAME = oid("2.5.4.3");

const rdn = (type: Buffer, value: string): Buffer => set(sequence(type, utf8String(value)));
const ia5 = (tag: number, text: string): Buffer => tlv(tag, Buffer.from(text, "ascii"));

export class RootCA {
  /** Canonical PEM of the root certificate (the bundle served to joiners and hashed into tokens). */
  readonly certPem: string;
  /** PKCS#8 PEM of the CA key; undefined for a verify-only root (fromCertOnly). */
  readonly keyPem: string | undefined;
  readonly certificate: X509Certificate;
  readonly certDer: Buffer;
  readonly publicKey: KeyObject;
  /** SHA-256 of the certificate DER, hex; identifies this root in caches. */
  readonly fingerprint: string;
  readonly notAfter: Date;
  private readonly privateKey: KeyObject | undefined;
  private readonly subjectDer: Buffer;
  private readonly authorityKeyIdExtension: Buffer;
  private cachedDigest: string | undefined;
  private signingCryptoKeyPromise: Promise<CryptoKey> | undefined;

  private constructor(certDer: Buffer, certificate: X509Certificate, privateKey: KeyObject | undefined) {
    this.certDer = certDer;
    this.certificate = certificate;
    this.certPem = encodePem("CERTIFICATE", certDer);
    this.publicKey = certificate.publicKey;
    this.privateKey = privateKey;
    this.keyPem = privateKey?.export({ type: "pkcs8", format: "pem" }).toString();
    this.fingerprint = createHash("sha256").update(certDer).digest("hex");
    this.notAfter = new Date(Date.parse(certificate.validTo));
    const spkiDer = this.publicKey.export({ type: "spki", format: "der" });
    const { subjectDer, keyIdentifier } = readSubjectAndKeyId(certDer, spkiDer);
    this.subjectDer = subjectDer;
    this.authorityKeyIdExtension = sequence(oid("2.5.29.35"), octetString(sequence(tlv(0x80, keyIdentifier))));
  }

  /** A root that can only verify (worker nodes hold no CA key). */
  static fromCertOnly(certPem: string): RootCA {
    const { der, certificate } = parseRootCertificate(certPem);
    return new RootCA(der, certificate, undefined);
  }

  /** @internal Used by loadRootCA after checking that the key matches. */
  static fromParts(der: Buffer, certificate: X509Certificate, privateKey: KeyObject): RootCA {
    return new RootCA(der, certificate, privateKey);
  }

  get canSign(): boolean {
    return this.privateKey !== undefined;
  }

  /** SHA-256 of certPem as base 36, zero-padded to 50 characters (DESIGN.md §2). */
  digest(): string {
    this.cachedDigest ??= caDigestOf(this.certPem);
    return this.cachedDigest;
  }

  /**
   * Signs a node certificate for the CSR's public key. The identity (role, node ID, cluster, zone)
   * comes only from the arguments. Throws CSR_INVALID for a bad CSR and INVALID_ARGUMENT for bad
   * arguments.
   */
  issueNodeCertificate(args: IssueNodeCertificateArgs): IssuedNodeCertificate {
    const privateKey = this.privateKey;
    if (!privateKey) {
      throw new ShoalError("FAILED_PRECONDITION", "this root CA has no private key and cannot sign; issue certificates on a manager");
    }
    const identity = checkIdentityArguments(args);
    const validityMs = args.validityMs ?? DEFAULT_NODE_CERT_VALIDITY_MS;
    if (!Number.isFinite(validityMs) || validityMs < MIN_NODE_CERT_VALIDITY_MS) {
      throw new ShoalError("INVALID_ARGUMENT", "node certificate validity must be at least 1 hour; raise --cert-expiry");
    }
    const csr = verifyCsr(args.csrPem);

    // Certificates carry whole seconds; compute with the truncated time so the returned dates match.
    const nowMs = Math.floor(args.clock.nowMs() / 1000) * 1000;
    const notBefore = new Date(nowMs - NOT_BEFORE_BACKDATE_MS);
    const notAfter = new Date(Math.min(nowMs + Math.floor(validityMs / 1000) * 1000, this.notAfter.getTime()));
    if (notAfter.getTime() <= nowMs) {
      throw new ShoalError("FAILED_PRECONDITION", "the root CA has expired; rotate the root CA before issuing certificates");
    }
    const serialBytes = newSerialBytes();
    const serialDer = unsignedInteger(serialBytes);

    const subjectKeyId = createHash("sha1").update(csr.spkiDer.subarray(csr.spkiDer.length - 65)).digest();
    const tbs = sequence(
      VERSION_3,
      serialDer,
      ALGORITHM_ECDSA_SHA256,
      this.subjectDer,
      sequence(time(notBefore), time(notAfter)),
      sequence(
        rdn(OID_ORGANIZATION, identity.clusterId),
        rdn(OID_ORGANIZATIONAL_UNIT, identity.role),
        rdn(OID_COMMON_NAME, identity.nodeId),
      ),
      csr.spkiDer,
      tlv(
        0xa3,
        sequence(
          EXT_KEY_USAGE_DIGITAL_SIGNATURE,
          EXT_SERVER_AND_CLIENT_AUTH,
          EXT_BASIC_CONSTRAINTS_NOT_CA,
          sequence(oid("2.5.29.14"), octetString(octetString(subjectKeyId))),
          this.authorityKeyIdExtension,
          sequence(
            oid("2.5.29.17"),
            octetString(sequence(ia5(0x82, identity.role), ia5(0x82, identity.nodeId), ia5(0x86, spiffeUri(identity)))),
          ),
        ),
      ),
    );
    const signature = sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" });
    const certDer = sequence(tbs, ALGORITHM_ECDSA_SHA256, bitString(signature));
    return {
      certPem: encodePem("CERTIFICATE", certDer),
      serial: normalizeSerial(serialBytes.toString("hex")),
      notBefore,
      notAfter,
    };
  }

  /** @internal The CA key as a webcrypto key, for @peculiar/x509 (CRLs). */
  signingCryptoKey(): Promise<CryptoKey> {
    const privateKey = this.privateKey;
    if (!privateKey) {
      return Promise.reject(new ShoalError("FAILED_PRECONDITION", "this root CA has no private key and cannot sign; sign on a manager"));
    }
    this.signingCryptoKeyPromise ??= webcrypto.subtle.importKey(
      "pkcs8",
      privateKey.export({ type: "pkcs8", format: "der" }),
      ECDSA_P256_SHA256,
      false,
      ["sign"],
    );
    return this.signingCryptoKeyPromise;
  }
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

function parseRootCertificate(certPem: string): { der: Buffer; certificate: X509Certificate } {
  const der = decodePem(certPem, "CERTIFICATE", "the root CA certificate");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    throw certInvalid("the root CA certificate", "cannot be parsed as X.509");
  }
  if (!certificate.ca) throw certInvalid("the root CA certificate", "is not a CA certificate (basic constraints CA:TRUE missing)");
  if (!isP256(certificate.publicKey)) throw certInvalid("the root CA certificate", "must have an ECDSA P-256 key");
  if (!certificate.verify(certificate.publicKey)) throw certInvalid("the root CA certificate", "is not self-signed");
  return { der, certificate };
}

/** Loads and checks a root CA (a P-256 CA certificate and its PKCS#8 key). */
export function loadRootCA(certPem: string, keyPem: string): RootCA {
  const { der, certificate } = parseRootCertificate(certPem);
  const keyDer = decodePem(keyPem, "PRIVATE KEY", "the root CA key");
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" });
  } catch {
    throw new ShoalError("PEM_INVALID", "the root CA key is not a PKCS#8 private key");
  }
  if (!isP256(privateKey)) throw new ShoalError("INVALID_ARGUMENT", "the root CA key must be ECDSA P-256");
  const fromKey = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const fromCert = certificate.publicKey.export({ type: "spki", format: "der" });
  if (!fromKey.equals(fromCert)) throw new ShoalError("INVALID_ARGUMENT", "the root CA key does not belong to the root CA certificate");
  return RootCA.fromParts(der, certificate, privateKey);
}

/** Creates a new root CA: ECDSA P-256, CN=shoal-root-ca, valid 20 years from now (backdated 1 h). */
export async function createRootCA(options: { clock: Clock }): Promise<RootCA> {
  const keys = (await webcrypto.subtle.generateKey(ECDSA_P256_SHA256, true, ["sign", "verify"])) as CryptoKeyPair;
  const nowMs = Math.floor(options.clock.nowMs() / 1000) * 1000;
  const notAfter = new Date(nowMs);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + ROOT_CA_VALIDITY_YEARS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerialBytes().toString("hex"),
    name: `CN=${ROOT_CA_COMMON_NAME}`,
    notBefore: new Date(nowMs - NOT_BEFORE_BACKDATE_MS),
    notAfter,
    signingAlgorithm: ECDSA_P256_SHA256,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const privateKey = KeyObject.from(keys.privateKey);
  return loadRootCA(encodePem("CERTIFICATE", Buffer.from(cert.rawData)), privateKey.export({ type: "pkcs8", format: "pem" }).toString());
}
