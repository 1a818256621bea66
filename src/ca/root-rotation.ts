// Root CA rotation in the CA library: checking an imported root, cross-signing the new root with
// the old one (so nodes that trust only the old root accept certificates issued under the new one),
// the trust bundle during a rotation, and which root a node certificate chains to.
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { decodePem, encodePem } from "./pem.js";
import { newSerialBytes, RootCA } from "./root-ca.js";
import { ECDSA_P256_SHA256, x509 } from "./x509-provider.js";

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Checks an operator-given root (`shoal ca --rotate --ca-cert F --ca-key F`) and loads it. Throws
 * PEM_INVALID (unreadable), CA_CERT_NOT_CA (no basicConstraints cA or no keyCertSign usage),
 * CA_KEY_UNSUPPORTED (not ECDSA P-256) or CA_KEY_MISMATCH (key and certificate differ).
 */
export function importRootCA(certPem: string, keyPem: string): RootCA {
  const der = decodePem(certPem, "CERTIFICATE", "the root CA certificate");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    throw new ShoalError("PEM_INVALID", "the root CA certificate cannot be parsed as X.509; give a PEM CERTIFICATE");
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new ShoalError("PEM_INVALID", "the root CA key cannot be read; give an unencrypted PEM private key (PKCS#8 or SEC1)");
  }
  if (!certificate.ca) {
    throw new ShoalError("CA_CERT_NOT_CA", "the certificate is not a CA certificate (basicConstraints cA is not set); give a root CA certificate");
  }
  const keyUsage = new x509.X509Certificate(new Uint8Array(der)).getExtension(x509.KeyUsagesExtension);
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new ShoalError("CA_CERT_NOT_CA", "the certificate may not sign certificates (its key usage lacks keyCertSign); give a root CA certificate");
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new ShoalError("CA_KEY_UNSUPPORTED", `the root CA key is ${key.asymmetricKeyType ?? "of an unknown type"}${key.asymmetricKeyType === "ec" ? ` on ${key.asymmetricKeyDetails?.namedCurve}` : ""}; Shoal needs an ECDSA P-256 key`);
  }
  const fromKey = createPublicKey(key).export({ type: "spki", format: "der" });
  const fromCert = certificate.publicKey.export({ type: "spki", format: "der" });
  if (!fromKey.equals(fromCert)) {
    throw new ShoalError("CA_KEY_MISMATCH", "the root CA key does not belong to the root CA certificate; give the key the certificate was made for");
  }
  if (!certificate.verify(certificate.publicKey)) {
    throw new ShoalError("CA_CERT_NOT_CA", "the certificate is not self-signed; give a root CA certificate, not an intermediate");
  }
  return RootCA.fromParts(der, certificate, key);
}

/**
 * An intermediate with the new root's subject and key, issued by the old root. A node that trusts
 * only the old root builds leaf → this → old root; one that trusts the new root stops at the new root.
 */
export async function crossSignRoot(oldRoot: RootCA, newRoot: RootCA, options: { clock: Clock }): Promise<string> {
  const issuer = new x509.X509Certificate(new Uint8Array(oldRoot.certDer));
  const subject = new x509.X509Certificate(new Uint8Array(newRoot.certDer));
  const nowMs = Math.floor(options.clock.nowMs() / 1000) * 1000;
  const notAfter = new Date(Math.min(oldRoot.notAfter.getTime(), newRoot.notAfter.getTime()));
  const publicKey = await subject.publicKey.export(ECDSA_P256_SHA256, ["verify"]);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: newSerialBytes().toString("hex"),
    subject: subject.subjectName,
    issuer: issuer.subjectName,
    notBefore: new Date(Math.max(nowMs - 3600_000, Date.parse(oldRoot.certificate.validFrom))),
    notAfter,
    signingAlgorithm: ECDSA_P256_SHA256,
    publicKey,
    signingKey: await oldRoot.signingCryptoKey(),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export(ECDSA_P256_SHA256, ["verify"])),
    ],
  });
  return encodePem("CERTIFICATE", Buffer.from(cert.rawData));
}

/** The certificates of a PEM bundle, in order. */
export function splitPemBundle(bundlePem: string): string[] {
  return (bundlePem.match(PEM_CERTIFICATE) ?? []).map((pem) => pem + "\n");
}

/** The roots a node trusts: the current one, and during a rotation the new one after it. */
export function trustBundleOf(currentRootPem: string, pendingRootPem: string | undefined): string {
  return pendingRootPem === undefined || pendingRootPem === "" ? currentRootPem : currentRootPem + pendingRootPem;
}

/** True when `certPem`'s first certificate (the leaf) is signed by `root`. */
export function isIssuedBy(certPem: string, root: RootCA): boolean {
  const [leafPem] = splitPemBundle(certPem);
  if (leafPem === undefined) return false;
  try {
    const leaf = new X509Certificate(leafPem);
    return leaf.checkIssued(root.certificate) && leaf.verify(root.publicKey);
  } catch {
    return false;
  }
}
