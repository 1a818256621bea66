// One prefetch job as the leader runs it (DESIGN.md §8): who takes part (every node that was a
// target, kept after its task starts, since a node that holds the image is the best peer there is),
// how far each got, the piece hashes the seeds reported, the peers excluded for a bad piece, the
// current plan, and what an operator is shown of it. Pure state: the prefetch loop feeds it the
// store, the nodes' reports and the clock, and publishes what it says.
import { pieceCountOf } from "../../base/bitfield.js";
import { NodeState, type Node } from "../../proto/shoal/v1/objects.js";
import type { PrefetchJobStatus, PrefetchNodeStatus } from "../../proto/shoal/v1/control.js";
import { PrefetchOutcome, type PrefetchBlob, type ReportPrefetchRequest } from "../../proto/shoal/v1/dispatcher.js";
import { DEFAULT_ZONE, nodeZone } from "../../state/index.js";
import type { PrefetchImage } from "./image-source.js";
import { isEligible, type PlanNode, type PrefetchPlan } from "./plan.js";
import type { WantedJob } from "./wanted-jobs.js";

/** The store says the node is down or disconnected now. */
export function isDownNow(node: Node): boolean {
  const state = node.status?.state ?? NodeState.NODE_STATE_UNKNOWN;
  return state === NodeState.NODE_STATE_DOWN || state === NodeState.NODE_STATE_DISCONNECTED;
}

/** A task's zone field is "" for the default zone; a node's zone is "default" then. */
function effectiveZone(zone: string): string {
  return zone === "" ? DEFAULT_ZONE : zone;
}

export type MemberState = "pending" | "running" | "done" | "failed";

export interface JobMember {
  nodeId: string;
  state: MemberState;
  /** Served a bad piece: no one's candidate in this job any more, and not planned. */
  excluded: boolean;
  bytesFromPeers: number;
  bytesFromRegistry: number;
  message: string;
}

/** What a report changed, for the loop: new hashes to publish, peers to plan without. */
export interface ReportEffect {
  newHashes: number;
  /** Piece hashes that differ from the ones published (two seeds disagree: a registry or a seed is lying). */
  conflictingHashes: number;
  excluded: string[];
  /** The node's part ended with this report. */
  ended: boolean;
  /** The node's blob failed its digest: the hashes it was given (or, for a seed, the bytes it pulled) were wrong. */
  digestFailure: boolean;
}

export type JobPhase = "resolving" | "running";

export class PrefetchJob {
  readonly jobId: string;
  readonly serviceId: string;
  readonly specVersion: bigint;
  readonly image: string;
  readonly manifestDigest: string;
  /** The zone of the job's tasks (a service version's tasks share it): no node of another zone takes part. */
  readonly zone: string;
  readonly startedAtMs: number;
  phase: JobPhase = "resolving";
  /** Why the image could not be read yet (the loop retries), shown to the operator. */
  resolveError = "";
  manifest: Buffer | undefined;
  blobs: PrefetchBlob[] = [];
  plan: PrefetchPlan | undefined;
  /** The inputs the plan was made from; a new plan is made when they change. */
  planKey = "";
  /** When the published orders' grants expire (0: nothing published yet). */
  grantsExpireAtMs = 0;
  /** Something the nodes must be told changed since the last publish. */
  dirty = false;
  lastPublishMs = 0;
  /** When every planned node had reported done (the job's time to all-complete). */
  completedAtMs: number | undefined;
  /** Raised each time the job starts again on every node (its hashes proved wrong). */
  attempt = 0;
  /** The nodes whose reported hashes were published, by blob (the suspects when a blob fails its digest). */
  private readonly hashSources = new Map<string, Set<string>>();
  private readonly members = new Map<string, JobMember>();

  constructor(wanted: WantedJob, nowMs: number) {
    this.jobId = wanted.jobId;
    this.serviceId = wanted.serviceId;
    this.specVersion = wanted.specVersion;
    this.image = wanted.image;
    this.manifestDigest = wanted.manifestDigest;
    this.zone = effectiveZone([...wanted.targets.values()][0] ?? "");
    this.startedAtMs = nowMs;
    this.addTargets(wanted);
  }

  /** Adds the job's current targets; members whose tasks started stay (they serve the others). */
  addTargets(wanted: WantedJob): boolean {
    let added = false;
    for (const [nodeId, zone] of wanted.targets) {
      if (this.members.has(nodeId) || effectiveZone(zone) !== this.zone) continue;
      this.members.set(nodeId, { nodeId, state: "pending", excluded: false, bytesFromPeers: 0, bytesFromRegistry: 0, message: "" });
      added = true;
    }
    return added;
  }

  /** The image is known: its blobs, cut into pieces whose hashes the seeds will report. */
  resolved(image: PrefetchImage, pieceSize: number): void {
    this.manifest = image.manifest;
    this.blobs = image.blobs.map((b) => ({ digest: b.digest, size: BigInt(b.size), pieceSize, pieceHashes: new Array<string>(pieceCountOf(b.size, pieceSize)).fill("") }));
    this.phase = "running";
    this.resolveError = "";
  }

  get sizeBytes(): number {
    return this.blobs.reduce((sum, b) => sum + Number(b.size), 0);
  }

  member(nodeId: string): JobMember | undefined {
    return this.members.get(nodeId);
  }

  /**
   * The members as the planner sees them, from the store now: a node no longer in the store was
   * removed (and revoked); its zone, address and state are the store's, never the node's word. A
   * member relabelled out of the job's zone takes no part (its tasks are being moved): planned on
   * its own it would become a seed of its new zone for an image of another.
   */
  planNodes(nodes: (nodeId: string) => Node | undefined, isDown: (node: Node) => boolean = isDownNow): PlanNode[] {
    return [...this.members.values()].map((m) => {
      const node = nodes(m.nodeId);
      const zone = node === undefined ? "" : nodeZone(node);
      return {
        nodeId: m.nodeId,
        zone,
        addr: node?.status?.addr ?? "",
        revoked: node === undefined,
        down: node !== undefined && isDown(node),
        excluded: m.excluded || (node !== undefined && zone !== this.zone),
        load: 0,
      };
    });
  }

  /** Takes a node's accepted report in. */
  applyReport(nodeId: string, report: ReportPrefetchRequest): ReportEffect {
    const effect: ReportEffect = { newHashes: 0, conflictingHashes: 0, excluded: [], ended: false, digestFailure: false };
    const member = this.members.get(nodeId);
    if (member === undefined) return effect;
    for (const h of report.pieceHashes) {
      const blob = this.blobs.find((b) => b.digest === h.blobDigest);
      if (blob === undefined || h.index >= blob.pieceHashes.length) continue;
      const known = blob.pieceHashes[h.index]!;
      if (known === "") {
        blob.pieceHashes[h.index] = h.hash;
        effect.newHashes++;
        (this.hashSources.get(blob.digest) ?? this.hashSources.set(blob.digest, new Set()).get(blob.digest)!).add(nodeId);
      } else if (known !== h.hash) {
        effect.conflictingHashes++;
      }
    }
    for (const bad of report.badPeers) {
      const peer = this.members.get(bad.nodeId);
      if (peer !== undefined && !peer.excluded) {
        peer.excluded = true;
        effect.excluded.push(bad.nodeId);
      }
    }
    // Totals, not increments: the latest report says it all.
    member.bytesFromPeers = Math.max(member.bytesFromPeers, Number(report.bytesFromPeers));
    member.bytesFromRegistry = Math.max(member.bytesFromRegistry, Number(report.bytesFromRegistry));
    if (report.outcome === PrefetchOutcome.PREFETCH_OUTCOME_DONE) {
      effect.ended = member.state !== "done";
      member.state = "done";
      member.message = "";
    } else if (report.outcome === PrefetchOutcome.PREFETCH_OUTCOME_FAILED) {
      effect.ended = member.state !== "failed";
      member.state = "failed";
      member.message = `${report.failureCode}: ${report.failureMessage}`.slice(0, 500);
      effect.digestFailure = report.failureCode === "DIGEST_MISMATCH";
    } else if (member.state === "pending") {
      member.state = "running";
    }
    if (effect.newHashes > 0) this.dirty = true;
    return effect;
  }

  /**
   * Starts the job again on every node after a blob failed its digest on `reporter`: a seed that
   * reports it pulled (or hashed) wrong bytes is excluded; when a peer reports it, the hashes it
   * was given were wrong, so every node whose hashes were published is excluded. The published
   * hashes are dropped (the new seeds report them again), failed members become pending, and the
   * attempt rises so that every node runs its order again. Returns the nodes excluded.
   */
  restart(reporter: string, reporterIsSeed: boolean): string[] {
    const suspects = reporterIsSeed ? new Set([reporter]) : new Set([...this.hashSources.values()].flatMap((set) => [...set]));
    const excluded: string[] = [];
    for (const id of suspects) {
      const m = this.members.get(id);
      if (m !== undefined && !m.excluded) {
        m.excluded = true;
        excluded.push(id);
      }
    }
    for (const blob of this.blobs) blob.pieceHashes.fill("");
    this.hashSources.clear();
    for (const m of this.members.values()) {
      if (m.state === "failed") {
        m.state = "pending";
        m.message = "";
      }
    }
    this.attempt++;
    this.completedAtMs = undefined;
    this.dirty = true;
    return excluded;
  }

  /**
   * Every member that can take part now holds the image (one that is excluded, removed or down
   * does not hold the job up). Notes the time the first time it is so; true only then.
   */
  checkComplete(planNodes: readonly PlanNode[], nowMs: number): boolean {
    if (this.completedAtMs !== undefined || !this.allDone(planNodes)) return false;
    this.completedAtMs = nowMs;
    return true;
  }

  private allDone(planNodes: readonly PlanNode[]): boolean {
    const active = planNodes.filter((p) => isEligible(p));
    return active.length > 0 && active.every((p) => this.members.get(p.nodeId)?.state === "done");
  }

  /** Whether every piece hash is known (no more publishes for hashes). */
  hashesComplete(): boolean {
    return this.blobs.every((b) => b.pieceHashes.every((h) => h !== ""));
  }

  /** End-of-job figures for the manager's log (DESIGN.md §8): registry egress, peer bytes, time. */
  metrics(nowMs: number): Record<string, unknown> {
    const members = [...this.members.values()];
    return {
      jobId: this.jobId,
      serviceId: this.serviceId,
      image: this.image,
      manifestDigest: this.manifestDigest,
      sizeBytes: this.sizeBytes,
      nodes: members.length,
      nodesDone: members.filter((m) => m.state === "done").length,
      nodesFailed: members.filter((m) => m.state === "failed").length,
      nodesExcluded: members.filter((m) => m.excluded).map((m) => m.nodeId),
      registryEgressBytes: members.reduce((sum, m) => sum + m.bytesFromRegistry, 0),
      peerBytes: members.reduce((sum, m) => sum + m.bytesFromPeers, 0),
      timeToAllCompleteMs: this.completedAtMs === undefined ? null : this.completedAtMs - this.startedAtMs,
      durationMs: nowMs - this.startedAtMs,
    };
  }

  /** What `shoal image prefetch status` shows; `endedAtMs` once the job is over. */
  view(planNodes: readonly PlanNode[], endedAtMs?: number): PrefetchJobStatus {
    const byId = new Map(planNodes.map((p) => [p.nodeId, p]));
    const roles = new Map((this.plan?.nodes ?? []).map((n) => [n.nodeId, n.role]));
    const nodes: PrefetchNodeStatus[] = [...this.members.values()].map((m) => {
      const p = byId.get(m.nodeId);
      const state = m.excluded || p?.excluded === true ? "excluded" : p?.revoked === true ? "revoked" : m.state !== "done" && p?.down === true ? "down" : m.state;
      return {
        nodeId: m.nodeId,
        zone: p?.zone ?? "",
        role: roles.get(m.nodeId) ?? "peer",
        state,
        bytesFromPeers: BigInt(m.bytesFromPeers),
        bytesFromRegistry: BigInt(m.bytesFromRegistry),
        message: m.message,
      };
    });
    const state = this.phase === "resolving" ? (endedAtMs === undefined ? "resolving" : "failed") : this.allDone(planNodes) ? "done" : endedAtMs === undefined ? "running" : "ended";
    return {
      jobId: this.jobId,
      serviceId: this.serviceId,
      specVersion: this.specVersion,
      image: this.image,
      manifestDigest: this.manifestDigest,
      state,
      sizeBytes: BigInt(this.sizeBytes),
      startedAt: new Date(this.startedAtMs),
      endedAt: endedAtMs === undefined ? undefined : new Date(endedAtMs),
      nodes,
      message: this.resolveError,
    };
  }
}
