// What the dispatcher writes to a node's store object: its state (READY on a session or heartbeat,
// DOWN after missed heartbeats), the description it reports about itself, and, for a demoted manager
// now on its worker certificate, the revocation of its earlier serials. Each write is a term-fenced
// read-modify-write, redone when another writer got in between (VERSION_CONFLICT).
import { ShoalError } from "../../base/errors.js";
import { CertificateStatus, NodeState, type Cluster, type Node, type NodeDescription } from "../../proto/shoal/v1/objects.js";
import type { ManagerContext } from "../context.js";
import { revokeSupersededSerials } from "../demotion.js";

/** Attempts of one read-modify-write before giving up (the next heartbeat or session retries). */
export const NODE_WRITE_ATTEMPTS = 3;

type NodeReportContext = Pick<ManagerContext, "store" | "raft" | "propose" | "clock" | "logger">;

/**
 * Reads, modifies and proposes until it applies, the object no longer needs a change (`modify`
 * returns undefined), leadership moved on from `term`, or the attempts run out.
 */
async function writeWithRetry<T>(ctx: NodeReportContext, term: number, modify: () => T | undefined, write: (updated: T) => Parameters<ManagerContext["propose"]>[0]): Promise<boolean> {
  for (let attempt = 0; attempt < NODE_WRITE_ATTEMPTS; attempt++) {
    if (!ctx.raft.isLeader || ctx.raft.term !== term) return false;
    const updated = modify();
    if (updated === undefined) return false;
    try {
      await ctx.propose(write(updated), { term });
      return true;
    } catch (err) {
      if (!(err instanceof ShoalError) || err.code !== "VERSION_CONFLICT") return false;
    }
  }
  return false;
}

export class NodeReports {
  /** State writes in flight, so a burst of heartbeats proposes one write, not one each. */
  private readonly marking = new Set<string>();

  constructor(private readonly ctx: NodeReportContext) {}

  async setState(nodeId: string, state: NodeState, addr: string | undefined, term: number): Promise<void> {
    const key = `${nodeId}:${state}`;
    if (this.marking.has(key)) return;
    this.marking.add(key);
    try {
      await writeWithRetry(
        this.ctx,
        term,
        () => {
          const node = this.ctx.store.getNode(nodeId);
          if (node === undefined) return undefined;
          const status = node.status ?? { state: NodeState.NODE_STATE_UNKNOWN, message: "", addr: "", lastHeartbeat: undefined };
          if (status.state === state && (addr === undefined || addr === "" || status.addr === addr)) return undefined;
          return {
            ...node,
            status: {
              ...status,
              state,
              message: state === NodeState.NODE_STATE_DOWN ? "heartbeat failure" : "",
              addr: addr !== undefined && addr !== "" ? addr : status.addr,
              lastHeartbeat: new Date(this.ctx.clock.nowMs()),
            },
          } satisfies Node;
        },
        (updated) => (tx) => tx.updateNode(updated),
      );
    } finally {
      this.marking.delete(key);
    }
  }

  /** What the node reports about itself (hostname, platform, executors, resources, engine labels), written when it changed. */
  async recordDescription(nodeId: string, description: NodeDescription, term: number): Promise<void> {
    await writeWithRetry(
      this.ctx,
      term,
      () => {
        const node = this.ctx.store.getNode(nodeId);
        if (node === undefined || sameDescription(node.description, description)) return undefined;
        return { ...node, description: copyDescription(description) } satisfies Node;
      },
      (updated) => (tx) => tx.updateNode(updated),
    );
  }

  /**
   * The serial of the certificate the node's session was opened with (NodeStatus.cert_serial): what
   * a root CA rotation counts as done. During a rotation, a node that comes with another certificate
   * than the one last issued to it lost that one (it died before writing it): it is asked to renew,
   * else the rotation would wait for it forever.
   */
  async recordCertSerial(nodeId: string, presentedSerial: string, term: number): Promise<void> {
    let lost = false;
    await writeWithRetry(
      this.ctx,
      term,
      () => {
        lost = false;
        const node = this.ctx.store.getNode(nodeId);
        if (node === undefined) return undefined;
        const status = node.status ?? { state: NodeState.NODE_STATE_UNKNOWN, message: "", addr: "", lastHeartbeat: undefined };
        const rotating = (this.ctx.store.getCluster()?.rootCa?.rootRotation?.caCertPem.length ?? 0) > 0;
        const cert = node.certificate;
        lost = rotating && cert !== undefined && cert.status === CertificateStatus.CERTIFICATE_STATUS_ISSUED && cert.serial !== "" && cert.serial !== presentedSerial;
        if (status.certSerial === presentedSerial && !lost) return undefined;
        return {
          ...node,
          status: { ...status, certSerial: presentedSerial },
          ...(lost ? { certificate: { ...cert!, status: CertificateStatus.CERTIFICATE_STATUS_RENEW } } : {}),
        } satisfies Node;
      },
      (updated) => (tx) => tx.updateNode(updated),
    );
    if (lost) this.ctx.logger.info({ renewNodeId: nodeId, presentedSerial }, "root CA rotation: a node came back with an older certificate than the one last issued to it; asked it to renew");
  }

  /** A demoted manager now on its worker certificate: its earlier serials can go (demotion.ts, step 2). */
  async revokeSuperseded(nodeId: string, presentedSerial: string, term: number): Promise<void> {
    try {
      const done = await writeWithRetry<Cluster>(
        this.ctx,
        term,
        () => {
          const node = this.ctx.store.getNode(nodeId);
          const cluster = this.ctx.store.getCluster();
          if (node === undefined || cluster === undefined) return undefined;
          return revokeSupersededSerials(cluster, node, presentedSerial, new Date(this.ctx.clock.nowMs()));
        },
        (updated) => (tx) => tx.updateCluster(updated),
      );
      if (done) this.ctx.logger.info({ demotedNodeId: nodeId }, "revoked the certificates a demoted manager no longer uses");
    } catch (err) {
      this.ctx.logger.warn({ err: String(err), demotedNodeId: nodeId }, "cannot revoke a demoted manager's earlier certificates; retried at its next session");
    }
  }
}

function copyDescription(d: NodeDescription): NodeDescription {
  return {
    hostname: d.hostname,
    platform: d.platform,
    engineVersion: d.engineVersion,
    engineLabels: { ...d.engineLabels },
    executors: [...d.executors],
    resources: d.resources === undefined ? undefined : { nanoCpus: d.resources.nanoCpus, memoryBytes: d.resources.memoryBytes, pids: d.resources.pids },
  };
}

function sameDescription(a: NodeDescription | undefined, b: NodeDescription): boolean {
  if (a === undefined) return false;
  const labelsA = Object.entries(a.engineLabels).sort();
  const labelsB = Object.entries(b.engineLabels).sort();
  return (
    a.hostname === b.hostname &&
    a.platform === b.platform &&
    a.engineVersion === b.engineVersion &&
    a.executors.join("\0") === b.executors.join("\0") &&
    JSON.stringify(labelsA) === JSON.stringify(labelsB) &&
    (a.resources?.nanoCpus ?? 0n) === (b.resources?.nanoCpus ?? 0n) &&
    (a.resources?.memoryBytes ?? 0n) === (b.resources?.memoryBytes ?? 0n) &&
    (a.resources?.pids ?? 0n) === (b.resources?.pids ?? 0n)
  );
}
