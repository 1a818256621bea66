// Certificate signing requests: made on the node (its private key never leaves it) and checked by
// the CA, which takes only the public key from them; everything else in a CSR is ignored.
import { createPublicKey, KeyObject, verify, webcrypto } from "node:crypto";
import { ShoalError } from "../base/errors.js";
import { childrenOf, content, decodeOid, readNode, TAG_BIT_STRING, TAG_OID, TAG_SEQUENCE, whole } from "./der.js";
import { decodePemBlocks, encodePem } from "./pem.js";
import { ECDSA_P256_SHA256, x509 } from "./x509-provider.js";

export const OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
// Anything in the CSR subject is ignored by the CA; the placeholder only makes the CSR well formed.
const CSR_PLACEHOLDER_SUBJECT = "CN=shoal-node";

export interface NodeKeyAndCsr {
  /** The node's new private key; it stays on the node. */
  privateKey: KeyObject;
  csrPem: string;
}

/** A fresh ECDSA P-256 key and a CSR for it, signed by that key. */
export async function createNodeKeyAndCsr(): Promise<NodeKeyAndCsr> {
  const keys = (await webcrypto.subtle.generateKey(ECDSA_P256_SHA256, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: CSR_PLACEHOLDER_SUBJECT,
    keys,
    signingAlgorithm: ECDSA_P256_SHA256,
  });
  return {
    privateKey: KeyObject.from(keys.privateKey),
    csrPem: encodePem("CERTIFICATE REQUEST", Buffer.from(csr.rawData)),
  };
}

export interface VerifiedCsr {
  /** The requester's public key (EC P-256). */
  publicKey: KeyObject;
  /** The public key as canonical SubjectPublicKeyInfo DER. */
  spkiDer: Buffer;
}

const MAX_CSR_BYTES = 16 * 1024;
// SubjectPublicKeyInfo header of an EC P-256 named-curve key, up to the uncompressed-point marker 04.
const P256_SPKI_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");

function csrInvalid(reason: string): ShoalError {
  return new ShoalError("CSR_INVALID", `the certificate signing request ${reason}; create a new one with createNodeKeyAndCsr()`);
}

/** Parses a CSR (PEM or DER), checks its self-signature and that its key is EC P-256; CSR_INVALID otherwise. */
export function verifyCsr(csr: string | Uint8Array): VerifiedCsr {
  let der: Buffer;
  if (typeof csr === "string") {
    let blocks;
    try {
      blocks = decodePemBlocks(csr, "the certificate signing request");
    } catch {
      throw csrInvalid("is not PEM text");
    }
    const block = blocks.find((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
    if (!block) throw csrInvalid('has no "CERTIFICATE REQUEST" PEM block');
    der = block.der;
  } else {
    der = Buffer.from(csr);
  }
  if (der.length > MAX_CSR_BYTES) throw csrInvalid(`is larger than ${MAX_CSR_BYTES} bytes`);

  // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
  let info, algorithm, signature, spkiNode;
  try {
    const outer = readNode(der, 0, "CSR_INVALID", "the certificate signing request");
    if (outer.tag !== TAG_SEQUENCE || outer.end !== der.length) throw csrInvalid("is not a single DER structure");
    [info, algorithm, signature] = childrenOf(der, outer, "CSR_INVALID", "the certificate signing request");
    if (!info || !algorithm || !signature || info.tag !== TAG_SEQUENCE || algorithm.tag !== TAG_SEQUENCE || signature.tag !== TAG_BIT_STRING) {
      throw csrInvalid("does not have the PKCS#10 structure");
    }
    // CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, [0] attributes }
    spkiNode = childrenOf(der, info, "CSR_INVALID", "the certificate signing request")[2];
    const algorithmOid = childrenOf(der, algorithm, "CSR_INVALID", "the certificate signing request")[0];
    if (!spkiNode || spkiNode.tag !== TAG_SEQUENCE || !algorithmOid || algorithmOid.tag !== TAG_OID) {
      throw csrInvalid("does not have the PKCS#10 structure");
    }
    if (decodeOid(content(der, algorithmOid)) !== OID_ECDSA_WITH_SHA256) throw csrInvalid("is not signed with ECDSA SHA-256");
  } catch (err) {
    if (err instanceof ShoalError && err.code === "CSR_INVALID") throw err;
    throw csrInvalid("cannot be parsed");
  }

  const spki = whole(der, spkiNode);
  const canonical = spki.length === P256_SPKI_PREFIX.length + 64 && spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX);
  let publicKey: KeyObject;
  try {
    // The usual named-curve, uncompressed P-256 key goes in as a JWK: OpenSSL's DER decoder costs
    // twice as much, and this is on the issuance hot path. Both reject points off the curve.
    publicKey = canonical
      ? createPublicKey({
          key: { kty: "EC", crv: "P-256", x: spki.subarray(-64, -32).toString("base64url"), y: spki.subarray(-32).toString("base64url") },
          format: "jwk",
        })
      : createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch {
    throw csrInvalid("carries a public key that cannot be read");
  }
  if (publicKey.asymmetricKeyType !== "ec" || publicKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw csrInvalid("must carry an ECDSA P-256 public key");
  }
  const signatureBits = content(der, signature);
  if (signatureBits.length < 2 || signatureBits[0] !== 0) throw csrInvalid("has a malformed signature");
  let valid = false;
  try {
    valid = verify("sha256", whole(der, info), { key: publicKey, dsaEncoding: "der" }, signatureBits.subarray(1));
  } catch {
    valid = false;
  }
  if (!valid) throw csrInvalid("has a signature that does not match its public key");
  return { publicKey, spkiDer: canonical ? spki : publicKey.export({ type: "spki", format: "der" }) };
}
