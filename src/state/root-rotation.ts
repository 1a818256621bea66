// Progress of a root CA rotation, from the store alone: a node is done when the certificate the
// store holds for it (the one the leader last issued) chains to the rotation's new root. The leader
// loop and `shoal ca` both read it here, so they agree on who the rotation waits for.
import { isIssuedBy, RootCA } from "../ca/index.js";
import { NodeState, type Cluster, type Node } from "../proto/shoal/v1/objects.js";

export interface RootRotationProgress {
  /** Nodes whose certificate is under the new root. */
  done: Node[];
  /** Nodes the rotation waits for (down ones included: `node rm` lets it finish without them). */
  waiting: Node[];
}

const parsedTargets = new Map<string, RootCA>();

function targetRoot(pem: string): RootCA {
  let root = parsedTargets.get(pem);
  if (root === undefined) {
    if (parsedTargets.size > 4) parsedTargets.clear();
    root = RootCA.fromCertOnly(pem);
    parsedTargets.set(pem, root);
  }
  return root;
}

/** Undefined when no rotation is in progress. */
export function rootRotationProgress(cluster: Cluster | undefined, nodes: readonly Node[]): RootRotationProgress | undefined {
  const pem = Buffer.from(cluster?.rootCa?.rootRotation?.caCertPem ?? []).toString("utf8");
  if (pem === "") return undefined;
  const root = targetRoot(pem);
  const done: Node[] = [];
  const waiting: Node[] = [];
  for (const node of nodes) {
    const certPem = Buffer.from(node.certificate?.certificate ?? []).toString("utf8");
    (certPem !== "" && isIssuedBy(certPem, root) ? done : waiting).push(node);
  }
  return { done, waiting };
}

export function isNodeDown(node: Node): boolean {
  return node.status?.state === NodeState.NODE_STATE_DOWN;
}
