// Node certificates signed by an external CFSSL-compatible signer (`shoal ca --external-ca
// protocol=cfssl,url=https://...`). The CA server has already checked the CSR and decided the
// identity (cluster, role, node ID, zone) from its own state; the external CA only signs. What it
// returns is not trusted: it must parse, be for the CSR's key, carry exactly the asked-for subject
// and SANs (the zone is in the SPIFFE URI SAN), chain to the root the managers issue under, and have
// sane dates. Anything else is EXTERNAL_CA_MISMATCH; an endpoint that cannot be reached, times out,
// or answers with an error or unreadable data is EXTERNAL_CA_UNAVAILABLE. The request carries only
// the CSR (a public key) and the identity; nothing secret leaves the manager.
import { request as httpsRequest } from "node:https";
import { X509Certificate } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { verifyCsr } from "./csr.js";
import { spiffeUri, type NodeRole } from "./node-identity.js";
import { encodePem } from "./pem.js";
import { normalizeSerial, type IssuedNodeCertificate, type RootCA } from "./root-ca.js";
import { splitPemBundle } from "./root-rotation.js";
import { NodeCertificateVerifier } from "./verify.js";
import type { ExternalCA } from "../proto/shoal/v1/objects.js";

export const EXTERNAL_CA_PROTOCOLS = ["cfssl"] as const;
/** The whole call to the signer, connection included. */
export const EXTERNAL_CA_TIMEOUT_MS = 10_000;
export const MAX_EXTERNAL_CA_RESPONSE_BYTES = 64 * 1024;
export const MAX_EXTERNAL_CA_URL_CHARS = 2048;
export const MAX_EXTERNAL_CA_CERT_BYTES = 64 * 1024;
/** How far a returned NotBefore may lie in the future (clocks of the manager and the signer differ). */
export const MAX_EXTERNAL_CA_CLOCK_SKEW_MS = 5 * 60_000;
/** A returned certificate may outlive the asked-for validity by this much (signers round, backdate). */
export const EXTERNAL_CA_VALIDITY_SLACK_MS = 60 * 60_000;
/** A returned certificate must still be valid this long (less would renew at once, in a loop). */
export const MIN_EXTERNAL_CA_REMAINING_MS = 10 * 60_000;
const SIGN_PATH = "/api/v1/cfssl/sign";

/**
 * Checks an external CA setting (the control API, before it is stored). The URL must be https
 * without credentials, query or fragment: the managers verify the signer with `caCertPem` (or the
 * system's CAs) and never put a secret in a URL that could end up in a log.
 */
export function checkExternalCA(spec: ExternalCA): ExternalCA {
  if (!(EXTERNAL_CA_PROTOCOLS as readonly string[]).includes(spec.protocol)) {
    throw new ShoalError("INVALID_ARGUMENT", `external CA protocol "${spec.protocol.slice(0, 40)}" is not supported; use protocol=cfssl`);
  }
  if (spec.url.length > MAX_EXTERNAL_CA_URL_CHARS) throw new ShoalError("INVALID_ARGUMENT", `the external CA URL is longer than ${MAX_EXTERNAL_CA_URL_CHARS} characters`);
  let url: URL;
  try {
    url = new URL(spec.url);
  } catch {
    throw new ShoalError("INVALID_ARGUMENT", "the external CA URL cannot be parsed; give https://HOST[:PORT][/PATH]");
  }
  if (url.protocol !== "https:") throw new ShoalError("INVALID_ARGUMENT", "the external CA URL must be https:// (the managers verify the signer's certificate)");
  if (url.username !== "" || url.password !== "") throw new ShoalError("INVALID_ARGUMENT", "the external CA URL must not carry a user name or password");
  if (url.search !== "" || url.hash !== "") throw new ShoalError("INVALID_ARGUMENT", "the external CA URL must not have a query or fragment");
  if (spec.caCertPem.length > MAX_EXTERNAL_CA_CERT_BYTES) throw new ShoalError("INVALID_ARGUMENT", `the external CA's TLS CA certificate is larger than ${MAX_EXTERNAL_CA_CERT_BYTES} bytes`);
  if (spec.caCertPem.length > 0) {
    const certs = splitPemBundle(Buffer.from(spec.caCertPem).toString("utf8"));
    if (certs.length === 0) throw new ShoalError("PEM_INVALID", "cacert= holds no PEM certificate");
    for (const pem of certs) {
      try {
        new X509Certificate(pem);
      } catch {
        throw new ShoalError("PEM_INVALID", "a certificate in cacert= cannot be parsed as X.509");
      }
    }
  }
  return { protocol: spec.protocol, url: url.toString().replace(/\/+$/, ""), caCertPem: Buffer.from(spec.caCertPem) };
}

/** The signer's scheme, host and port: what logs and errors name (never a path or anything else). */
export function externalCAOrigin(spec: ExternalCA): string {
  try {
    return new URL(spec.url).origin;
  } catch {
    return "(unparsable URL)";
  }
}

export interface ExternalSignArgs {
  csr: string | Uint8Array;
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  zone: string;
  /** The root the certificate must chain to (the pending root during a rotation). */
  issuingRoot: RootCA;
  validityMs: number;
  clock: Clock;
  timeoutMs?: number;
}

/** Letters, digits and plain punctuation only, at most 200 characters: for a signer's error text. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
}

function unavailable(origin: string, reason: string): ShoalError {
  return new ShoalError("EXTERNAL_CA_UNAVAILABLE", `the external CA ${origin} ${reason}; no certificate was issued: check the signer and retry`);
}

function mismatch(origin: string, reason: string): ShoalError {
  return new ShoalError("EXTERNAL_CA_MISMATCH", `the external CA ${origin} returned a certificate that ${reason}; it was refused and no certificate was issued`);
}

/** POSTs `body` as JSON; resolves with the status and at most MAX_EXTERNAL_CA_RESPONSE_BYTES of body. */
function postJson(spec: ExternalCA, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  const origin = externalCAOrigin(spec);
  const url = new URL(spec.url.replace(/\/+$/, "") + SIGN_PATH);
  const ca = spec.caCertPem.length > 0 ? Buffer.from(spec.caCertPem).toString("utf8") : undefined;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        ca,
        agent: false,
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_EXTERNAL_CA_RESPONSE_BYTES) {
            req.destroy();
            reject(unavailable(origin, `answered with more than ${MAX_EXTERNAL_CA_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (err) => reject(unavailable(origin, `broke off its answer (${printable(err.message)})`)));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      const what = err.name === "AbortError" || err.name === "TimeoutError" ? `did not answer within ${timeoutMs} ms` : `cannot be reached (${printable(err.code ?? err.message)})`;
      reject(unavailable(origin, what));
    });
    req.end(body);
  });
}

interface CfsslAnswer {
  success?: unknown;
  result?: { certificate?: unknown } | null;
  errors?: { code?: unknown; message?: unknown }[] | null;
}

/** Sends the checked CSR and the decided identity to the signer and checks the certificate it returns. */
export async function signWithExternalCA(spec: ExternalCA, args: ExternalSignArgs): Promise<IssuedNodeCertificate> {
  const origin = externalCAOrigin(spec);
  const csr = verifyCsr(args.csr);
  const csrPem = typeof args.csr === "string" ? args.csr : encodePem("CERTIFICATE REQUEST", Buffer.from(args.csr));
  const identity = { clusterId: args.clusterId, role: args.role, nodeId: args.nodeId, zone: args.zone };
  const uri = spiffeUri(identity);
  // SwarmKit's external CA sends the same: the subject and the hosts (SANs) override the CSR's.
  const body = JSON.stringify({
    certificate_request: csrPem,
    hosts: [args.role, args.nodeId, uri],
    subject: { CN: args.nodeId, names: [{ O: args.clusterId, OU: args.role }] },
  });
  const { status, text } = await postJson(spec, body, args.timeoutMs ?? EXTERNAL_CA_TIMEOUT_MS);
  let answer: CfsslAnswer;
  try {
    answer = JSON.parse(text) as CfsslAnswer;
  } catch {
    throw unavailable(origin, `answered HTTP ${status} with something other than JSON`);
  }
  if (status !== 200 || answer.success !== true) {
    const first = Array.isArray(answer.errors) ? answer.errors[0] : undefined;
    const detail = first === undefined ? "" : `: ${printable(String(first.message ?? ""))} (code ${printable(String(first.code ?? ""))})`;
    throw unavailable(origin, `refused to sign (HTTP ${status}${detail})`);
  }
  const certificateText = answer.result?.certificate;
  if (typeof certificateText !== "string") throw unavailable(origin, "answered without result.certificate");
  return checkExternalCertificate(origin, certificateText, csr.spkiDer, { ...identity, issuingRoot: args.issuingRoot, validityMs: args.validityMs, clock: args.clock });
}

/**
 * The checks on what the signer returned; exported for tests. A certificate that fails any of them
 * is never stored nor given to the node.
 */
export function checkExternalCertificate(
  origin: string,
  certificateText: string,
  csrSpkiDer: Buffer,
  expected: { clusterId: string; role: NodeRole; nodeId: string; zone: string; issuingRoot: RootCA; validityMs: number; clock: Clock },
): IssuedNodeCertificate {
  const pems = splitPemBundle(certificateText);
  if (pems.length !== 1) throw mismatch(origin, `holds ${pems.length} PEM certificates instead of one`);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pems[0]!);
  } catch {
    throw mismatch(origin, "cannot be parsed as X.509");
  }
  if (!certificate.publicKey.export({ type: "spki", format: "der" }).equals(csrSpkiDer)) {
    throw mismatch(origin, "is for another public key than the node's CSR");
  }
  // The layout checks every node certificate gets (exactly O/OU/CN, exactly the three SANs, the
  // extended key usages, not a CA) and the chain to the issuing root; a private verifier so that the
  // refused certificate does not sit in the shared cache.
  let info;
  try {
    // NotBefore may lie up to the skew ahead; NotAfter is checked below (at least 10 more minutes).
    const skewed = { ...expected.clock, nowMs: () => expected.clock.nowMs() + MAX_EXTERNAL_CA_CLOCK_SKEW_MS };
    info = new NodeCertificateVerifier({ maxEntries: 1 }).verify(certificate.raw, { rootCA: expected.issuingRoot, clock: skewed }, { allowExpired: true });
  } catch (err) {
    const reason = err instanceof ShoalError ? err.message.replace(/^the node certificate /, "").replace(/;.*$/, "") : "is not a node certificate";
    throw mismatch(origin, reason);
  }
  if (info.clusterId !== expected.clusterId) throw mismatch(origin, `names cluster ${info.clusterId} instead of ${expected.clusterId}`);
  if (info.role !== expected.role) throw mismatch(origin, `has role ${info.role} instead of ${expected.role}`);
  if (info.nodeId !== expected.nodeId) throw mismatch(origin, `names node ${info.nodeId} instead of ${expected.nodeId}`);
  if (info.zone !== expected.zone) throw mismatch(origin, `is for zone ${info.zone} instead of ${expected.zone}`);
  const nowMs = expected.clock.nowMs();
  if (info.notAfter.getTime() < nowMs + MIN_EXTERNAL_CA_REMAINING_MS) throw mismatch(origin, `expires at ${info.notAfter.toISOString()}, too soon to be used`);
  if (info.notAfter.getTime() > nowMs + expected.validityMs + EXTERNAL_CA_VALIDITY_SLACK_MS) {
    throw mismatch(origin, `is valid until ${info.notAfter.toISOString()}, longer than the cluster's certificate expiry allows`);
  }
  if (info.notAfter.getTime() > expected.issuingRoot.notAfter.getTime()) throw mismatch(origin, "outlives the root CA");
  return {
    certPem: encodePem("CERTIFICATE", certificate.raw),
    serial: normalizeSerial(certificate.serialNumber),
    notBefore: info.notBefore,
    notAfter: info.notAfter,
  };
}
