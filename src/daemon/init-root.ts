// The root CA and the first manager's certificate of a new cluster (`shoal init`):
//  - by default the managers generate the root (ECDSA P-256) and keep its key in the encrypted store;
//  - with `--external-ca protocol=cfssl,url=https://... --ca-cert ROOT.pem` (as `docker swarm init
//    --external-ca` with the root certificate only) the root key stays with the external CA: this
//    manager's certificate is signed there, after the same checks the CA server makes of every
//    certificate a signer returns (one certificate, for our CSR's key, exactly the asked-for subject
//    and SANs, chaining to ROOT.pem, sane dates), and the store never holds a root key.
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import {
  checkExternalCA,
  createRootCA,
  DEFAULT_NODE_CERT_VALIDITY_MS,
  DEFAULT_ZONE,
  RootCA,
  signWithExternalCA,
  splitPemBundle,
  type IssuedNodeCertificate,
} from "../ca/index.js";
import type { ExternalCA } from "../proto/shoal/v1/objects.js";

/** Largest root certificate PEM `--ca-cert` takes at init. */
export const MAX_INIT_CA_CERT_BYTES = 64 * 1024;

export interface InitialRoot {
  rootCA: RootCA;
  /** PKCS#8 PEM of the root key for the store; "" when the managers hold no key (external CA). */
  caKeyPem: string;
  /** The checked external CA setting; undefined when the managers sign. */
  externalCa: ExternalCA | undefined;
  /** The first manager's certificate. */
  issued: IssuedNodeCertificate;
}

export async function initialRoot(
  req: { externalCa: ExternalCA | undefined; caCertPem: Uint8Array },
  first: { clusterId: string; nodeId: string; csrPem: string; validityMs: number | undefined; clock: Clock },
): Promise<InitialRoot> {
  const external = req.externalCa !== undefined && req.externalCa.url !== "";
  const hasCert = req.caCertPem.length > 0;
  if (external !== hasCert) {
    throw new ShoalError(
      "INVALID_ARGUMENT",
      external
        ? "--external-ca needs --ca-cert ROOT.pem at init: the root certificate the external CA signs under (the managers hold no root key)"
        : "--ca-cert at init is for a cluster whose certificates an external CA signs: give --external-ca protocol=cfssl,url=https://... too",
    );
  }
  if (!external) {
    const rootCA = await createRootCA({ clock: first.clock });
    const issued = rootCA.issueNodeCertificate({ csrPem: first.csrPem, nodeId: first.nodeId, role: "swarm-manager", clusterId: first.clusterId, zone: DEFAULT_ZONE, validityMs: first.validityMs, clock: first.clock });
    return { rootCA, caKeyPem: rootCA.keyPem!, externalCa: undefined, issued };
  }
  const externalCa = checkExternalCA(req.externalCa!);
  if (req.caCertPem.length > MAX_INIT_CA_CERT_BYTES) throw new ShoalError("INVALID_ARGUMENT", `--ca-cert must be at most ${MAX_INIT_CA_CERT_BYTES} bytes of PEM`);
  const text = Buffer.from(req.caCertPem).toString("utf8");
  if (text.includes("PRIVATE KEY")) {
    throw new ShoalError("INVALID_ARGUMENT", "--ca-cert holds a private key: with --external-ca give the root certificate only; its key stays with the external CA");
  }
  const pems = splitPemBundle(text);
  if (pems.length !== 1) throw new ShoalError("PEM_INVALID", `--ca-cert must hold exactly one certificate (the root), not ${pems.length}`);
  // A self-signed P-256 CA certificate (CERT_INVALID otherwise), as every root of a cluster.
  const rootCA = RootCA.fromCertOnly(pems[0]!);
  const issued = await signWithExternalCA(externalCa, {
    csr: first.csrPem,
    nodeId: first.nodeId,
    clusterId: first.clusterId,
    role: "swarm-manager",
    zone: DEFAULT_ZONE,
    issuingRoot: rootCA,
    validityMs: first.validityMs ?? DEFAULT_NODE_CERT_VALIDITY_MS,
    clock: first.clock,
  });
  return { rootCA, caKeyPem: "", externalCa, issued };
}
