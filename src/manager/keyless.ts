// Clusters whose managers hold the root CA certificate only (`shoal init --external-ca ... --ca-cert
// ROOT.pem`): every node certificate comes from the external CA, prefetch grants are signed by the
// leader's node key (src/ca/grant.ts v2), and the peer listener checks revocation per call instead
// of through a CRL (manager.ts refreshCrl). What cannot work without the key is refused here, with
// CA_KEY_NOT_HELD and what to do instead.
import { ShoalError } from "../base/errors.js";
import type { RootCA as RootCAProto } from "../proto/shoal/v1/objects.js";

/** True for a cluster created without a root key (its store never held one). */
export function isKeylessRoot(rootCa: RootCAProto | undefined): boolean {
  return rootCa !== undefined && rootCa.caCertPem.length > 0 && rootCa.caKeyPem.length === 0;
}

const PREFIX = "this cluster's managers hold only the root CA certificate, not its key (it was created with `shoal init --external-ca`)";

/**
 * `shoal ca --rotate`, generated or imported: refused. A rotation needs the current root to
 * cross-sign the new one (nodes that trust only the old root must accept certificates under the new
 * one), and the managers cannot; importing a key with --ca-key would also put a root key into the
 * store of a cluster made not to hold one.
 */
export function keylessRotationRefused(): ShoalError {
  return new ShoalError(
    "CA_KEY_NOT_HELD",
    `${PREFIX}: a root rotation needs the current root's key to cross-sign the new root, so it is not supported here. ` +
      "To move to another root, create a new cluster with `shoal init --external-ca protocol=cfssl,url=https://... --ca-cert NEW-ROOT.pem` against a signer that holds the new root's key, and move the services to it",
  );
}

/** `shoal ca --no-external-ca`: nothing but the external CA can sign node certificates. */
export function keylessNoExternalCaRefused(): ShoalError {
  return new ShoalError(
    "CA_KEY_NOT_HELD",
    `${PREFIX}: only the external CA can sign node certificates, so it cannot be turned off. ` +
      "To use another signer, run `shoal ca --external-ca protocol=cfssl,url=https://NEW-SIGNER` with one that signs with the same root key",
  );
}

/** `shoal daemon --renew-expired`: the last manager reissues its certificate from a key it does not have. */
export function keylessRenewExpiredRefused(nodeId: string): ShoalError {
  return new ShoalError(
    "CA_KEY_NOT_HELD",
    `${PREFIX}: --renew-expired reissues the last manager's own certificate from the root key, so it cannot be used here. ` +
      `Have the external CA's operator sign a new certificate for this node's key (O=<cluster ID>, OU=swarm-manager, CN=${nodeId}, the same SANs) into DIR/certificates/node.crt, ` +
      "or create a new cluster with `shoal init --external-ca ... --ca-cert ROOT.pem`",
  );
}
