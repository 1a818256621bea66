// Progress of a root CA rotation, from the store alone: a node is done when the certificate the
// store holds for it (the one the leader last issued) chains to the rotation's new root and the
// node's latest session was made with that very certificate (NodeStatus.cert_serial). The leader
// loop and `shoal ca` both read it here, so they agree on who the rotation waits for.
import { isIssuedBy, RootCA } from "../ca/index.js";
import { NodeState, type Cluster, type Node } from "../proto/shoal/v1/objects.js";

export interface RootRotationProgress {
  /** Nodes whose certificate is under the new root. */
  done: Node[];
  /** Nodes the rotation waits for (down ones included: `node rm` lets it finish without them). */
  waiting: Node[];
  /**
   * The waiting nodes that already have a certificate under the new root issued, not yet used on a
   * session: asking them to renew again would only repeat the issuance (the dispatcher asks one
   * that came back with an older certificate, NodeReports.recordCertSerial).
   */
  issuedNotInUse: Node[];
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
  const issuedNotInUse: Node[] = [];
  for (const node of nodes) {
    const certPem = Buffer.from(node.certificate?.certificate ?? []).toString("utf8");
    // Issued is not enough: the node must have come with it (a node that died before writing its
    // new certificate holds only the old root's, and would be shut out once the old root goes).
    const inUse = node.certificate?.serial !== undefined && node.certificate.serial !== "" && node.status?.certSerial === node.certificate.serial;
    const issued = certPem !== "" && isIssuedBy(certPem, root);
    (issued && inUse ? done : waiting).push(node);
    if (issued && !inUse) issuedNotInUse.push(node);
  }
  return { done, waiting, issuedNotInUse };
}

export function isNodeDown(node: Node): boolean {
  return node.status?.state === NodeState.NODE_STATE_DOWN;
}
