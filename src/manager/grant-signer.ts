// What signs prefetch grants on the leader (src/ca/grant.ts): the cluster CA key where the managers
// hold it (v1 grants, unchanged), else — a cluster made with `shoal init --external-ca`, whose
// managers hold the root certificate only — this manager's own node key and certificate (v2 grants,
// which peers accept only from a current, unrevoked swarm-manager certificate of this cluster).
import { managerGrantSigner, type GrantSigner, type ManagerGrantSigner, type RootCA } from "../ca/index.js";
import type { NodeIdentityPem } from "../transport/index.js";

export function grantSignerSource(rootCA: () => RootCA, identity: () => NodeIdentityPem): () => GrantSigner {
  // Parsed once per certificate: a renewal gives a new certificate (and key), and so a new signer.
  let cached: { certPem: string; signer: ManagerGrantSigner } | undefined;
  return () => {
    const root = rootCA();
    if (root.canSign) return root;
    const current = identity();
    if (cached?.certPem !== current.certPem) cached = { certPem: current.certPem, signer: managerGrantSigner(current.certPem, current.keyPem) };
    return cached.signer;
  };
}
