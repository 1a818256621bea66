// Prefetch grants (DESIGN.md §2, §3 rule 9): a short statement signed by the cluster CA key that one
// node may fetch one blob from the peers of one zone until a time. A serving peer holds only the root
// certificate, so it verifies with the CA's public key; only the leader, which holds the key, signs.
//
// Wire form (opaque to everyone but this module), all lengths in bytes:
//   version u8 (=1) · jobId · clusterId · zone · nodeId · blobDigest · expiresAtMs u64 BE · signature
// where each string is a u8 length then its UTF-8 bytes, and the signature is ECDSA P-256/SHA-256 in
// IEEE P1363 form (64 bytes: fixed length, so the body's end is known without a second length).
// The signature covers GRANT_SIGNING_DOMAIN followed by the body, so no other thing the CA key signs
// (certificates, CRLs: DER that starts with 0x30) can be replayed as a grant, nor a grant as them.
import { createPrivateKey, sign, verify, type KeyObject } from "node:crypto";
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { isValidZone } from "./node-identity.js";
import type { RootCA } from "./root-ca.js";

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
}

export const GRANT_SIGNING_DOMAIN = Buffer.from("shoal-prefetch-grant-v1\0", "ascii");
export const GRANT_VERSION = 1;
/** Upper bound on an encoded grant; anything larger is refused before it is parsed. */
export const MAX_GRANT_BYTES = 1024;
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

function encodeBody(grant: PrefetchGrant): Buffer {
  const parts: Buffer[] = [Buffer.from([GRANT_VERSION])];
  for (const text of [grant.jobId, grant.clusterId, grant.zone, grant.nodeId, grant.blobDigest]) {
    const bytes = Buffer.from(text, "utf8");
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  const expires = Buffer.alloc(8);
  expires.writeBigUInt64BE(BigInt(grant.expiresAtMs));
  parts.push(expires);
  return Buffer.concat(parts);
}

/** Splits wire bytes into the grant, the signed body and the signature; GRANT_INVALID when malformed. */
function decode(bytes: Uint8Array): { grant: PrefetchGrant; body: Buffer; signature: Buffer } {
  if (bytes.length === 0) throw invalid("is missing");
  if (bytes.length > MAX_GRANT_BYTES) throw invalid(`is larger than ${MAX_GRANT_BYTES} bytes`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf[0] !== GRANT_VERSION) throw invalid("has an unknown version");
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
  if (at + 8 + SIGNATURE_BYTES !== buf.length) throw invalid("has the wrong length");
  const expires = buf.readBigUInt64BE(at);
  if (expires > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid("has an expiry out of range");
  at += 8;
  const [jobId, clusterId, zone, nodeId, blobDigest] = texts as [string, string, string, string, string];
  return {
    grant: { jobId, clusterId, zone, nodeId, blobDigest, expiresAtMs: Number(expires) },
    body: buf.subarray(0, at),
    signature: buf.subarray(at),
  };
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

/** Encodes and signs a grant with the cluster CA key. INVALID_ARGUMENT names a bad field. */
export function signGrant(rootCA: RootCA, grant: PrefetchGrant): Buffer {
  const problem = fieldProblem(grant);
  if (problem !== undefined) throw new ShoalError("INVALID_ARGUMENT", `a prefetch grant ${problem}`);
  const body = encodeBody(grant);
  const signature = sign("sha256", Buffer.concat([GRANT_SIGNING_DOMAIN, body]), { key: signingKeyOf(rootCA), dsaEncoding: "ieee-p1363" });
  const bytes = Buffer.concat([body, signature]);
  // Every field is bounded, so this holds by construction; checked so a change that breaks it stops here.
  if (bytes.length > MAX_GRANT_BYTES) throw new ShoalError("INTERNAL", `an encoded grant took ${bytes.length} bytes, above ${MAX_GRANT_BYTES}`);
  return bytes;
}

/**
 * Checks a grant as a serving peer must on every request: signed by this cluster's CA, then each
 * expectation in turn, each mismatch with its own code. Needs only the root certificate. During a
 * root CA rotation a node trusts two roots and the leader signs with the one it holds as current:
 * pass every trusted root; a grant signed by any of them is the cluster's.
 */
export function verifyGrant(rootCA: RootCA | readonly RootCA[], bytes: Uint8Array, expect: GrantExpectation): PrefetchGrant {
  const { grant, body, signature } = decode(bytes);
  const signed = Buffer.concat([GRANT_SIGNING_DOMAIN, body]);
  let good = false;
  for (const root of Array.isArray(rootCA) ? (rootCA as readonly RootCA[]) : [rootCA as RootCA]) {
    try {
      good ||= verify("sha256", signed, { key: root.publicKey, dsaEncoding: "ieee-p1363" }, signature);
    } catch {
      // Not this root's signature.
    }
  }
  if (!good) throw invalid("is not signed by this cluster's CA");
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
