// Checks a peer's node certificate: chain to our root, dates, cluster, role and revocation. The
// transport calls this on every authenticated RPC, so parsed certificates and signature results are
// cached by DER fingerprint; dates, cluster, role and revocation are re-checked on every call.
import { createHash, X509Certificate } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { isNodeRole, parseSpiffeUri, spiffeUri, type NodeIdentity, type NodeRole } from "./node-identity.js";
import { decodePem } from "./pem.js";
import { normalizeSerial, type RootCA } from "./root-ca.js";

export interface RevocationChecker {
  isRevoked(subject: { nodeId: string; serial: string }): boolean;
}

export interface NodeCertificateInfo extends NodeIdentity {
  /** Canonical uppercase hex (normalizeSerial). */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface VerifyNodeCertificateOptions {
  /** The trusted roots: one, or (during a root rotation) the old and the new. */
  rootCA: RootCA | readonly RootCA[];
  /** When set, the certificate's O must equal it. */
  clusterId?: string;
  /** When set, the certificate's OU must be one of these. */
  roles?: readonly NodeRole[];
  clock: Clock;
  revocation?: RevocationChecker;
}

interface CacheEntry {
  info: NodeCertificateInfo;
  notBeforeMs: number;
  notAfterMs: number;
  certificate: X509Certificate;
  /** Fingerprints of the roots whose signature on this certificate has been checked and found good. */
  verifiedByRoots: Set<string>;
}

export const DEFAULT_VERIFY_CACHE_ENTRIES = 1024;
const MAX_CERT_BYTES = 16 * 1024;
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

function invalid(reason: string): ShoalError {
  return new ShoalError("CERT_INVALID", `the node certificate ${reason}; the node must rejoin or renew its certificate`);
}

/** Reads O, OU and CN from Node's multi-line subject; each must appear exactly once. */
function readSubject(subject: string): { o: string; ou: string; cn: string } {
  const fields = new Map<string, string>();
  for (const line of subject.split("\n")) {
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    if (eq <= 0 || fields.has(key)) throw invalid("has a subject that is not O=<cluster>, OU=<role>, CN=<node ID>");
    fields.set(key, line.slice(eq + 1));
  }
  const o = fields.get("O");
  const ou = fields.get("OU");
  const cn = fields.get("CN");
  if (fields.size !== 3 || o === undefined || ou === undefined || cn === undefined) {
    throw invalid("has a subject that is not O=<cluster>, OU=<role>, CN=<node ID>");
  }
  return { o, ou, cn };
}

function parseCertificate(der: Buffer): Omit<CacheEntry, "verifiedByRoots"> {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    throw invalid("cannot be parsed as X.509");
  }
  if (certificate.ca) throw invalid("is a CA certificate, not a node certificate");
  const { o, ou, cn } = readSubject(certificate.subject);
  if (!isValidId(o) || !isValidId(cn) || !isNodeRole(ou)) {
    throw invalid("has a subject that is not O=<cluster>, OU=<role>, CN=<node ID>");
  }
  const sans = (certificate.subjectAltName ?? "").split(", ");
  const uris = sans.filter((s) => s.startsWith("URI:"));
  const identity = uris.length === 1 ? parseSpiffeUri(uris[0]!.slice(4)) : undefined;
  if (!identity) throw invalid("has no Shoal SPIFFE URI (spiffe://<cluster>/zone/<zone>/<role>/<node ID>)");
  if (identity.clusterId !== o || identity.role !== ou || identity.nodeId !== cn) {
    throw invalid("has a SPIFFE URI that disagrees with its subject");
  }
  const expectedSans = new Set([`DNS:${ou}`, `DNS:${cn}`, `URI:${spiffeUri(identity)}`]);
  if (sans.length !== expectedSans.size || !sans.every((s) => expectedSans.has(s))) {
    throw invalid("has subject alternative names other than DNS <role>, DNS <node ID> and the SPIFFE URI");
  }
  const extendedKeyUsage = certificate.keyUsage ?? [];
  if (!extendedKeyUsage.includes(SERVER_AUTH) || !extendedKeyUsage.includes(CLIENT_AUTH)) {
    throw invalid("lacks the serverAuth and clientAuth extended key usages");
  }
  const notBeforeMs = Date.parse(certificate.validFrom);
  const notAfterMs = Date.parse(certificate.validTo);
  if (!Number.isFinite(notBeforeMs) || !Number.isFinite(notAfterMs)) throw invalid("has unreadable validity dates");
  const serial = normalizeSerial(certificate.serialNumber);
  return {
    info: { ...identity, serial, notBefore: new Date(notBeforeMs), notAfter: new Date(notAfterMs) },
    notBeforeMs,
    notAfterMs,
    certificate,
  };
}

function copyInfo(info: NodeCertificateInfo): NodeCertificateInfo {
  return { ...info, notBefore: new Date(info.notBefore), notAfter: new Date(info.notAfter) };
}

/** A certificate verifier with its own bounded LRU cache; most callers use verifyNodeCertificate. */
export class NodeCertificateVerifier {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly maxEntries: number;

  constructor(options: { maxEntries?: number } = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_VERIFY_CACHE_ENTRIES;
    if (!(this.maxEntries >= 1)) throw new ShoalError("INVALID_ARGUMENT", "maxEntries must be at least 1");
  }

  get size(): number {
    return this.cache.size;
  }

  private entryFor(cert: string | Uint8Array): CacheEntry {
    const der = typeof cert === "string" ? decodePem(cert, "CERTIFICATE", "the node certificate") : Buffer.from(cert);
    if (der.length === 0 || der.length > MAX_CERT_BYTES) throw invalid(`must be 1 to ${MAX_CERT_BYTES} bytes of DER`);
    const key = createHash("sha256").update(der).digest("base64");
    const hit = this.cache.get(key);
    if (hit) {
      // Move to the most-recently-used end.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const entry: CacheEntry = { ...parseCertificate(der), verifiedByRoots: new Set() };
    this.cache.set(key, entry);
    if (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return entry;
  }

  /** Identity fields of a well-formed node certificate, without any trust checks (for display). */
  parse(cert: string | Uint8Array): NodeCertificateInfo {
    return copyInfo(this.entryFor(cert).info);
  }

  verify(cert: string | Uint8Array, options: VerifyNodeCertificateOptions, dates: { allowExpired?: boolean } = {}): NodeCertificateInfo {
    const entry = this.entryFor(cert);
    const roots: readonly RootCA[] = Array.isArray(options.rootCA) ? options.rootCA : [options.rootCA as RootCA];
    if (!roots.some((root) => entry.verifiedByRoots.has(root.fingerprint))) {
      const signer = roots.find((root) => entry.certificate.checkIssued(root.certificate) && entry.certificate.verify(root.publicKey));
      if (signer === undefined) {
        throw new ShoalError("CERT_UNTRUSTED", "the node certificate was not issued by this cluster's root CA; the node belongs to another cluster or must rejoin");
      }
      entry.verifiedByRoots.add(signer.fingerprint);
    }
    const nowMs = options.clock.nowMs();
    if (nowMs < entry.notBeforeMs) {
      throw new ShoalError("CERT_NOT_YET_VALID", `the node certificate is not valid until ${entry.info.notBefore.toISOString()}; check the clocks of both nodes`);
    }
    if (nowMs > entry.notAfterMs && dates.allowExpired !== true) {
      throw new ShoalError("CERT_EXPIRED", `the node certificate expired at ${entry.info.notAfter.toISOString()}; the node must rejoin with a join token`);
    }
    const info = entry.info;
    if (options.clusterId !== undefined && info.clusterId !== options.clusterId) {
      throw new ShoalError("CERT_WRONG_CLUSTER", `the node certificate belongs to cluster ${info.clusterId}, not ${options.clusterId}`);
    }
    if (options.roles !== undefined && !options.roles.includes(info.role)) {
      throw new ShoalError("CERT_WRONG_ROLE", `this call needs role ${options.roles.join(" or ")}, but the node certificate has role ${info.role}`);
    }
    if (options.revocation?.isRevoked({ nodeId: info.nodeId, serial: info.serial })) {
      throw new ShoalError("CERT_REVOKED", `node ${info.nodeId} (certificate serial ${info.serial}) was removed from the cluster; it must join again with a token`);
    }
    return copyInfo(info);
  }
}

const sharedVerifier = new NodeCertificateVerifier();

/**
 * Verifies a node certificate (PEM or DER) against the root CA, its validity dates, and optionally
 * the cluster, the allowed roles and the revocation list. Throws CERT_* / PEM_INVALID ShoalErrors.
 */
export function verifyNodeCertificate(cert: string | Uint8Array, options: VerifyNodeCertificateOptions): NodeCertificateInfo {
  return sharedVerifier.verify(cert, options);
}

/**
 * As verifyNodeCertificate, except that a certificate past its NotAfter passes (everything else is
 * checked: root, subject, cluster, roles, revocation, NotBefore). Only for the recovery of a node
 * whose certificate expired while it was down (`shoal daemon --renew-expired`); never for an RPC.
 */
export function verifyExpiredNodeCertificate(cert: string | Uint8Array, options: VerifyNodeCertificateOptions): NodeCertificateInfo {
  return sharedVerifier.verify(cert, options, { allowExpired: true });
}

/** Whether a node certificate is past its NotAfter by `clock` (the same test verifyNodeCertificate makes). */
export function isCertificateExpired(info: { notAfter: Date }, clock: Clock): boolean {
  return clock.nowMs() > info.notAfter.getTime();
}

/** Reads a node certificate's identity without trust checks (display only; never for authorization). */
export function parseNodeCertificate(cert: string | Uint8Array): NodeCertificateInfo {
  return sharedVerifier.parse(cert);
}
