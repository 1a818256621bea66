// Read views that strip what must never leave the manager (DESIGN rule 6): secret data, the CA
// private key, the unlock key, the secret MAC key, registry passwords, and join tokens unless the caller asked for them.
import type { Cluster, RegistryAuth, Secret } from "../proto/shoal/v1/objects.js";
import { deepCopy } from "./copies.js";

/** A copy of the secret without its data (its keyed MAC and size stay, so versions can be told apart). */
export function redactSecret(secret: Secret): Secret {
  const copy = deepCopy(secret);
  if (copy.spec !== undefined) copy.spec.data = Buffer.alloc(0);
  return copy;
}

/** A registry login without its password (the username and the CA stay: neither is secret). */
export function redactRegistryAuth(auth: RegistryAuth): RegistryAuth {
  return { ...deepCopy(auth), password: Buffer.alloc(0) };
}

/**
 * A copy of the cluster without the CA key and unlock key; join tokens (the current ones and those a
 * rotation replaced) only with `includeJoinTokens`.
 */
export function redactCluster(cluster: Cluster, options: { includeJoinTokens?: boolean } = {}): Cluster {
  const copy = deepCopy(cluster);
  copy.unlockKey = "";
  copy.secretMacKey = Buffer.alloc(0);
  copy.registries = copy.registries.map(redactRegistryAuth);
  if (copy.rootCa !== undefined) {
    copy.rootCa.caKeyPem = Buffer.alloc(0);
    if (copy.rootCa.rootRotation !== undefined) copy.rootCa.rootRotation.caKeyPem = Buffer.alloc(0);
    if (copy.rootCa.joinTokens !== undefined && options.includeJoinTokens !== true) {
      copy.rootCa.joinTokens.worker = "";
      copy.rootCa.joinTokens.manager = "";
      // A rotated-away token still names the CA and a secret that was handed out; never show it.
      copy.rootCa.joinTokens.previousWorker = "";
      copy.rootCa.joinTokens.previousManager = "";
      // Digests of replaced tokens: not reversible, but a read API has no use for them.
      copy.rootCa.joinTokens.replacedWorker = [];
      copy.rootCa.joinTokens.replacedManager = [];
    }
  }
  return copy;
}
