// Prefetch grants (DESIGN.md §2, §3 rule 9): a short statement that one node may fetch one blob from
// the peers of one zone until a time, signed by the leader. A serving peer holds only the root
// certificate. Two versions, told apart by the first byte:
//
//  v1 (clusters whose managers hold the root CA key): signed by the CA key, verified with the root's
//     public key. Unchanged since it was introduced.
//  v2 (clusters with an external CA, `shoal init --external-ca`, whose managers hold the root
//     certificate only): signed by the signing manager's own node key, and carrying that manager's
//     certificate. A verifier accepts it only when that certificate chains to the cluster root, has
//     O = this cluster and OU = swarm-manager, is within its dates and is not on the revocation list
//     (by node ID or serial) — the same checks every manager RPC makes of a manager. Why this and not
//     a key the external CA would certify for grants: the leader already holds exactly such a
//     credential (a root-issued swarm-manager certificate), revocation already covers it (`node rm`
//     and demotion revoke a manager's certificates), and no new key has to be made, stored or
//     rotated. A worker's certificate, a removed or demoted manager's and another cluster's are all
//     refused, so what a v2 grant proves is what a v1 grant proves: a current manager of this cluster
//     issued it (a manager can sign certificates through the CA server anyway).
//
// Wire form (opaque to everyone but this module), all lengths in bytes:
//   v1: version u8 (=1) · jobId · clusterId · zone · nodeId · blobDigest · expiresAtMs u64 BE · signature
//   v2: version u8 (=2) · jobId · clusterId · zone · nodeId · blobDigest · expiresAtMs u64 BE
//       · signer certificate DER length u16 BE · signer certificate DER · signature
// where each string is a u8 length then its UTF-8 bytes, and the signature is ECDSA P-256/SHA-256 in
// IEEE P1363 form (64 bytes: fixed length, so the body's end is known without a second length).
// The signature covers the version's signing domain followed by everything before the signature, so
// no other thing the key signs (certificates, CRLs, TLS handshakes: none starts with the domain) can
// be replayed as a grant, nor a grant as them, nor a v1 grant as a v2 one.
import { createPrivateKey, createPublicKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { isValidZone } from "./node-identity.js";
import { decodePem } from "./pem.js";
import type { RootCA } from "./root-ca.js";
import { verifyNodeCertificate, type RevocationChecker } from "./verify.js";

export interface PrefetchGrant {
  jobId: string;
  clusterId: string;
  zone: string;
  nodeId: string;
  blobDigest: string;
  expiresAtMs: number;
}

export interface GrantExpectation {
  clusterId: string;
  zone: string;
  nodeId: string;
  blobDigest: string;
  nowMs: number;
  /**
   * The serving node's revocation list. A v2 (manager-signed) grant is refused without it: its
   * signer's certificate must be checked against the list.
   */
  revocation?: RevocationChecker;
}

/** A manager's own node certificate (the leaf) and key: what signs v2 grants in a keyless cluster. */
export interface ManagerGrantSigner {
  readonly kind: "manager";
  readonly certDer: Buffer;
  readonly key: KeyObject;
}

/** The CA key (v1) or, in a cluster whose managers hold no root key, the leader's node key (v2). */
export type GrantSigner = RootCA | ManagerGrantSigner;

export const GRANT_SIGNING_DOMAIN = Buffer.from("shoal-prefetch-grant-v1\0", "ascii");
export const GRANT_SIGNING_DOMAIN_V2 = Buffer.from("shoal-prefetch-grant-v2\0", "ascii");
export const GRANT_VERSION = 1;
export const GRANT_VERSION_MANAGER_SIGNED = 2;
/** Upper bound on an encoded v1 grant; anything larger is refused before it is parsed. */
export const MAX_GRANT_BYTES = 1024;
/** Upper bound on a signer certificate inside a v2 grant (ours are about 700 bytes of DER). */
export const MAX_GRANT_SIGNER_CERT_BYTES = 3 * 1024;
/** Upper bound on an encoded v2 grant (the v1 fields, the signer certificate, the signature). */
export const MAX_MANAGER_SIGNED_GRANT_BYTES = MAX_GRANT_BYTES + 2 + MAX_GRANT_SIGNER_CERT_BYTES;
/** DESIGN.md §2: a grant lives at most this long. */
export const MAX_GRANT_LIFETIME_MS = 10 * 60 * 1000;
/**
 * How far a manager's clock may run ahead of a serving peer's before a fresh grant looks as if it
 * lived longer than MAX_GRANT_LIFETIME_MS; past that the grant is refused as not short-lived.
 */
export const MAX_GRANT_CLOCK_SKEW_MS = 5 * 60 * 1000;

const SIGNATURE_BYTES = 64;
const MAX_FIELD_BYTES = 255;
const JOB_ID_PATTERN = /^[0-9A-Za-z][0-9A-Za-z._:-]{0,127}$/;
const BLOB_DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

function invalid(reason: string): ShoalError {
  return new ShoalError("GRANT_INVALID", `the prefetch grant ${reason}; the node must ask the managers for a new plan`);
}

/** Field rules shared by signing (a bad argument) and verifying (a CA-signed grant we cannot use). */
function fieldProblem(grant: PrefetchGrant): string | undefined {
  if (!JOB_ID_PATTERN.test(grant.jobId)) return "has a job ID that is not 1-128 characters of [0-9A-Za-z._:-]";
  if (!isValidId(grant.clusterId)) return "has a cluster ID that is not 25 characters of [0-9a-z]";
  if (!isValidZone(grant.zone)) return "has a zone that is not a valid zone name";
  if (!isValidId(grant.nodeId)) return "has a node ID that is not 25 characters of [0-9a-z]";
  if (!BLOB_DIGEST_PATTERN.test(grant.blobDigest)) return "has a blob digest that is not sha256:<64 hex>";
  if (!Number.isSafeInteger(grant.expiresAtMs) || grant.expiresAtMs <= 0) return "has an expiry that is not a positive integer of milliseconds";
  return undefined;
}

function encodeBody(grant: PrefetchGrant, version: number = GRANT_VERSION): Buffer {
  const parts: Buffer[] = [Buffer.from([version])];
  for (const text of [grant.jobId, grant.clusterId, grant.zone, grant.nodeId, grant.blobDigest]) {
    const bytes = Buffer.from(text, "utf8");
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  const expires = Buffer.alloc(8);
  expires.writeBigUInt64BE(BigInt(grant.expiresAtMs));
  parts.push(expires);
  return Buffer.concat(parts);
}

interface Decoded {
  version: number;
  grant: PrefetchGrant;
  /** Everything the signature covers after the domain. */
  body: Buffer;
  signature: Buffer;
  /** v2 only: the signing manager's certificate (DER). */
  signerCertDer?: Buffer;
}

/** Splits wire bytes into the grant, the signed body and the signature; GRANT_INVALID when malformed. */
function decode(bytes: Uint8Array): Decoded {
  if (bytes.length === 0) throw invalid("is missing");
  if (bytes.length > MAX_MANAGER_SIGNED_GRANT_BYTES) throw invalid(`is larger than ${MAX_MANAGER_SIGNED_GRANT_BYTES} bytes`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = buf[0]!;
  if (version !== GRANT_VERSION && version !== GRANT_VERSION_MANAGER_SIGNED) throw invalid("has an unknown version");
  if (version === GRANT_VERSION && buf.length > MAX_GRANT_BYTES) throw invalid(`is larger than ${MAX_GRANT_BYTES} bytes`);
  let at = 1;
  const texts: string[] = [];
  for (let i = 0; i < 5; i++) {
    const length = buf[at];
    if (length === undefined || at + 1 + length > buf.length) throw invalid("is truncated");
    const field = buf.subarray(at + 1, at + 1 + length);
    const text = field.toString("utf8");
    // A round trip that changes the bytes means invalid UTF-8: refuse rather than guess.
    if (!Buffer.from(text, "utf8").equals(field)) throw invalid("has a field that is not UTF-8");
    texts.push(text);
    at += 1 + length;
  }
  if (at + 8 > buf.length) throw invalid("is truncated");
  const expires = buf.readBigUInt64BE(at);
  if (expires > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid("has an expiry out of range");
  at += 8;
  let signerCertDer: Buffer | undefined;
  if (version === GRANT_VERSION_MANAGER_SIGNED) {
    if (at + 2 > buf.length) throw invalid("is truncated");
    const certLength = buf.readUInt16BE(at);
    if (certLength === 0 || certLength > MAX_GRANT_SIGNER_CERT_BYTES) throw invalid(`has a signer certificate that is not 1 to ${MAX_GRANT_SIGNER_CERT_BYTES} bytes`);
    if (at + 2 + certLength > buf.length) throw invalid("is truncated");
    signerCertDer = buf.subarray(at + 2, at + 2 + certLength);
    at += 2 + certLength;
  }
  if (at + SIGNATURE_BYTES !== buf.length) throw invalid("has the wrong length");
  const [jobId, clusterId, zone, nodeId, blobDigest] = texts as [string, string, string, string, string];
  return {
    version,
    grant: { jobId, clusterId, zone, nodeId, blobDigest, expiresAtMs: Number(expires) },
    body: buf.subarray(0, at),
    signature: buf.subarray(at),
    ...(signerCertDer !== undefined ? { signerCertDer } : {}),
  };
}

/**
 * The signer for v2 grants from a manager's own TLS identity (its certificate chain PEM, leaf
 * first, and its PKCS#8 key). Only the leaf goes into grants: a verifier checks it against the root.
 */
export function managerGrantSigner(certPem: string, keyPem: string): ManagerGrantSigner {
  const certDer = decodePem(certPem, "CERTIFICATE", "the manager's node certificate");
  if (certDer.length > MAX_GRANT_SIGNER_CERT_BYTES) {
    throw new ShoalError("INVALID_ARGUMENT", `the manager's node certificate is larger than ${MAX_GRANT_SIGNER_CERT_BYTES} bytes and cannot sign grants`);
  }
  const key = createPrivateKey(keyPem);
  const certKey = new X509Certificate(certDer).publicKey.export({ type: "spki", format: "der" });
  if (!certKey.equals(createPublicKey(key).export({ type: "spki", format: "der" }))) {
    throw new ShoalError("INVALID_ARGUMENT", "the manager's node key does not belong to its node certificate");
  }
  return { kind: "manager", certDer, key };
}

function isManagerSigner(signer: GrantSigner): signer is ManagerGrantSigner {
  return (signer as ManagerGrantSigner).kind === "manager";
}

// KeyObjects parsed from a RootCA's PKCS#8 once, not on every grant the leader issues.
const signingKeys = new WeakMap<RootCA, KeyObject>();

function signingKeyOf(rootCA: RootCA): KeyObject {
  let key = signingKeys.get(rootCA);
  if (key === undefined) {
    if (!rootCA.canSign || rootCA.keyPem === undefined) {
      throw new ShoalError("FAILED_PRECONDITION", "this root CA has no private key and cannot sign grants; grants are issued by the leader");
    }
    key = createPrivateKey(rootCA.keyPem);
    signingKeys.set(rootCA, key);
  }
  return key;
}

/**
 * Encodes and signs a grant: v1 with the cluster CA key, v2 with a manager's node key (see the
 * header). INVALID_ARGUMENT names a bad field.
 */
export function signGrant(signer: GrantSigner, grant: PrefetchGrant): Buffer {
  const problem = fieldProblem(grant);
  if (problem !== undefined) throw new ShoalError("INVALID_ARGUMENT", `a prefetch grant ${problem}`);
  if (isManagerSigner(signer)) {
    const length = Buffer.alloc(2);
    length.writeUInt16BE(signer.certDer.length);
    const body = Buffer.concat([encodeBody(grant, GRANT_VERSION_MANAGER_SIGNED), length, signer.certDer]);
    const signature = sign("sha256", Buffer.concat([GRANT_SIGNING_DOMAIN_V2, body]), { key: signer.key, dsaEncoding: "ieee-p1363" });
    const bytes = Buffer.concat([body, signature]);
    if (bytes.length > MAX_MANAGER_SIGNED_GRANT_BYTES) throw new ShoalError("INTERNAL", `an encoded grant took ${bytes.length} bytes, above ${MAX_MANAGER_SIGNED_GRANT_BYTES}`);
    return bytes;
  }
  const rootCA = signer;
  const body = encodeBody(grant);
  const signature = sign("sha256", Buffer.concat([GRANT_SIGNING_DOMAIN, body]), { key: signingKeyOf(rootCA), dsaEncoding: "ieee-p1363" });
  const bytes = Buffer.concat([body, signature]);
  // Every field is bounded, so this holds by construction; checked so a change that breaks it stops here.
  if (bytes.length > MAX_GRANT_BYTES) throw new ShoalError("INTERNAL", `an encoded grant took ${bytes.length} bytes, above ${MAX_GRANT_BYTES}`);
  return bytes;
}

/** A clock that stands still at the verifier's `nowMs`: certificate dates are judged at that time. */
function frozenClock(nowMs: number): Clock {
  const noTimers = (): never => {
    throw new ShoalError("INTERNAL", "grant verification sets no timers");
  };
  return { nowMs: () => nowMs, setTimeout: noTimers, setInterval: noTimers, sleep: noTimers };
}

/** v2: the signer must be a current manager of this cluster under one of the roots; returns its key. */
function managerSignerKey(roots: RootCA | readonly RootCA[], signerCertDer: Buffer, expect: GrantExpectation): KeyObject {
  if (expect.revocation === undefined) throw invalid("is signed by a manager, and this peer has no revocation list to check that manager against");
  try {
    verifyNodeCertificate(signerCertDer, { rootCA: roots, clusterId: expect.clusterId, roles: ["swarm-manager"], clock: frozenClock(expect.nowMs), revocation: expect.revocation });
  } catch (err) {
    const reason = err instanceof ShoalError ? `${err.code}: ${err.message}` : "its certificate cannot be read";
    throw invalid(`is not signed by a current manager of this cluster (${reason})`);
  }
  return signerKeyOf(signerCertDer);
}

// Public keys of the signer certificates seen last (a cluster has a handful of managers, and one
// leader signs every grant of a job): parsing the certificate again on every request made a v2 check
// cost about 4 times a v1 one (scripts/bench/grant-verify.ts). Keyed by the whole DER, so a key is
// only reused for exactly the certificate that was just verified above.
const SIGNER_KEY_CACHE_ENTRIES = 16;
const signerKeys = new Map<string, KeyObject>();

function signerKeyOf(certDer: Buffer): KeyObject {
  const id = certDer.toString("base64");
  let key = signerKeys.get(id);
  if (key === undefined) {
    key = new X509Certificate(certDer).publicKey;
    signerKeys.set(id, key);
    if (signerKeys.size > SIGNER_KEY_CACHE_ENTRIES) signerKeys.delete(signerKeys.keys().next().value!);
  }
  return key;
}

/**
 * Checks a grant as a serving peer must on every request: signed by this cluster's CA (v1), or by a
 * current manager of this cluster (v2: its certificate chains to a root, O = this cluster, OU =
 * swarm-manager, valid, not revoked), then each expectation in turn, each mismatch with its own code.
 * Needs only the root certificates (and, for v2, the revocation list).
 */
export function verifyGrant(roots: RootCA | readonly RootCA[], bytes: Uint8Array, expect: GrantExpectation): PrefetchGrant {
  const { version, grant, body, signature, signerCertDer } = decode(bytes);
  let good = false;
  if (version === GRANT_VERSION_MANAGER_SIGNED) {
    const key = managerSignerKey(roots, signerCertDer!, expect);
    try {
      good = verify("sha256", Buffer.concat([GRANT_SIGNING_DOMAIN_V2, body]), { key, dsaEncoding: "ieee-p1363" }, signature);
    } catch {
      good = false;
    }
    if (!good) throw invalid("does not carry a valid signature of the manager it names");
  } else {
    const list: readonly RootCA[] = Array.isArray(roots) ? roots : [roots as RootCA];
    good = list.some((rootCA) => {
      try {
        return verify("sha256", Buffer.concat([GRANT_SIGNING_DOMAIN, body]), { key: rootCA.publicKey, dsaEncoding: "ieee-p1363" }, signature);
      } catch {
        return false;
      }
    });
    if (!good) throw invalid("is not signed by this cluster's CA");
  }
  const problem = fieldProblem(grant);
  if (problem !== undefined) throw invalid(problem);
  if (grant.clusterId !== expect.clusterId) throw new ShoalError("GRANT_WRONG_CLUSTER", "the prefetch grant is for another cluster");
  if (grant.zone !== expect.zone) throw new ShoalError("GRANT_WRONG_ZONE", `the prefetch grant is for zone ${grant.zone}, this peer serves zone ${expect.zone}`);
  if (grant.nodeId !== expect.nodeId) throw new ShoalError("GRANT_WRONG_NODE", `the prefetch grant was issued to another node than ${expect.nodeId}`);
  if (grant.blobDigest !== expect.blobDigest) throw new ShoalError("GRANT_WRONG_BLOB", "the prefetch grant is for another blob than the one requested");
  if (expect.nowMs >= grant.expiresAtMs) throw new ShoalError("GRANT_EXPIRED", "the prefetch grant has expired; the node must ask the managers for a new plan");
  if (grant.expiresAtMs - expect.nowMs > MAX_GRANT_LIFETIME_MS + MAX_GRANT_CLOCK_SKEW_MS) {
    throw invalid(`claims a lifetime longer than ${MAX_GRANT_LIFETIME_MS / 60_000} minutes`);
  }
  return grant;
}
