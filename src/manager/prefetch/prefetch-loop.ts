// Leader loop: P2P image prefetch (DESIGN.md §3 rule 9, §8). From the tasks in the store it keeps
// one job per (service version, image digest) whose tasks wait on their nodes (wantedJobs); reads
// the image's manifest once; plans per zone who pulls from the registry and who fetches from which
// peers (planPrefetch); signs a grant per node and blob and hands the orders to the dispatcher
// (buildOrders, the order board). The nodes' reports come back through the board: the seeds'
// piece hashes are published to the zone (throttled), a peer that served a bad piece is excluded
// and the job replanned without it, and each node's bytes and end are shown to the operator.
// A node that is removed (revoked), goes down or changes address is planned out at the next pass;
// grants are renewed before they expire; the job is withdrawn when none of its tasks waits any more.
//
// Jobs live in this loop's memory only: a new leader rebuilds them from the tasks (the job IDs are
// derived from the store), and the nodes keep what they fetched.
import { isShoalError, ShoalError } from "../../base/errors.js";
import type { GrantSigner } from "../../ca/index.js";
import type { Node } from "../../proto/shoal/v1/objects.js";
import { ReconcileTrigger, type LeaderLoop, type LeaderLoopFactory, type LoopContext } from "../../state/index.js";
import type { PrefetchImageSource, SeedAccess } from "./image-source.js";
import { isDownNow, PrefetchJob } from "./job.js";
import type { PrefetchJobViews } from "./job-views.js";
import type { PrefetchOrderBoard } from "./order-board.js";
import { buildOrders, DEFAULT_GRANT_TTL_MS } from "./orders.js";
import { isEligible, planPrefetch, type PlanNode } from "./plan.js";
import { wantedJobs } from "./wanted-jobs.js";

export const DEFAULT_PREFETCH_PIECE_SIZE = 4 * 1024 * 1024;
/** New piece hashes reach the zone at most this often (every publish sends every node its order). */
export const DEFAULT_PUBLISH_INTERVAL_MS = 250;
/** A manifest the registry would not give is asked for again after this long, while the job is wanted. */
export const RESOLVE_RETRY_MS = 5000;
/** The agents' piece store takes pieces up to 64 MiB (its MAX_PIECE_SIZE). */
const MAX_PIECE_SIZE = 64 * 1024 * 1024;
/**
 * A node the store says is down takes part until it has been down this long. A node that misses
 * heartbeats on a loaded machine is marked down and up again within seconds; planned out at once,
 * it lost its order, stopped its transfer (its partial blob went) and started over, and a seed that
 * flapped handed the job to a new seed that pulled the image from the registry again (seen in the
 * loopback bench under load). A node that is really gone is planned out after this; its peers stop
 * asking it sooner, after a few timeouts (blob-fetch's maxPeerFailures).
 */
export const DOWN_GRACE_MS = 15_000;
/** A job whose hashes proved wrong runs again at most this many times in all (then its tasks pull themselves). */
export const MAX_PREFETCH_ATTEMPTS = 3;
/** More blobs than this is not an image (the OCI client allows 256 layers and a config). */
const MAX_BLOBS = 257;

export interface PrefetchLoopOptions {
  images: PrefetchImageSource;
  board: PrefetchOrderBoard;
  views: PrefetchJobViews;
  clusterId: string;
  /** What signs the grants: the CA key, or the leader's node key in a keyless cluster (grant-signer.ts). */
  grantSigner: () => GrantSigner;
  pieceSize?: number;
  grantTtlMs?: number;
  candidatesPerNode?: number;
  publishIntervalMs?: number;
}

export function prefetchLoop(options: PrefetchLoopOptions): LeaderLoopFactory {
  return { name: "prefetch", start: (ctx) => new PrefetchLoop(ctx, options).start() };
}

class PrefetchLoop {
  private readonly jobs = new Map<string, PrefetchJob>();
  /** Manifest reads in flight, by job. */
  private readonly resolving = new Map<string, Promise<void>>();
  /** Jobs whose manifest read failed, and when they may try again. */
  private readonly retryAtMs = new Map<string, number>();
  /** Seed access per image, as asked for at the last grant renewal. */
  private readonly seedAccess = new Map<string, SeedAccess>();
  private readonly trigger: ReconcileTrigger;
  private readonly pieceSize: number;
  private readonly grantTtlMs: number;
  private readonly publishIntervalMs: number;
  private publishTimer = false;
  /** Since when each node has been down, as this loop first saw it (reset when it is up). */
  private readonly downSince = new Map<string, number>();
  /** Down for DOWN_GRACE_MS or more (from this loop's first sight of it down). */
  private readonly isDown = (node: Node): boolean => {
    if (!isDownNow(node)) {
      this.downSince.delete(node.id);
      return false;
    }
    const nowMs = this.ctx.clock.nowMs();
    const since = this.downSince.get(node.id);
    if (since === undefined) {
      this.downSince.set(node.id, nowMs);
      // Look again when the grace ends: the plan then goes on without it.
      this.ctx.timer(() => this.trigger.request(), DOWN_GRACE_MS);
      return false;
    }
    return nowMs - since >= DOWN_GRACE_MS;
  };
  private unsubscribe: () => void = () => undefined;

  constructor(
    private readonly ctx: LoopContext,
    private readonly opts: PrefetchLoopOptions,
  ) {
    this.pieceSize = opts.pieceSize ?? DEFAULT_PREFETCH_PIECE_SIZE;
    if (!Number.isSafeInteger(this.pieceSize) || this.pieceSize < 1 || this.pieceSize > MAX_PIECE_SIZE) {
      throw new ShoalError("INVALID_ARGUMENT", `prefetch piece size must be between 1 and ${MAX_PIECE_SIZE} bytes, got ${this.pieceSize}`);
    }
    this.grantTtlMs = opts.grantTtlMs ?? DEFAULT_GRANT_TTL_MS;
    this.publishIntervalMs = opts.publishIntervalMs ?? DEFAULT_PUBLISH_INTERVAL_MS;
    this.trigger = new ReconcileTrigger(() => this.pass(), {
      clock: ctx.clock,
      onError: (err) => ctx.logger.warn({ err: String(err) }, "prefetch pass failed; retrying"),
    });
  }

  start(): LeaderLoop {
    // Tasks (new targets, tasks that started) and nodes (removed, down, relabelled, a new address).
    this.ctx.watch({ tables: ["tasks", "nodes"] }, () => this.trigger.request());
    this.unsubscribe = this.opts.board.onReport((accepted) => this.onReport(accepted.nodeId, accepted.report));
    // Wakes the loop for grant renewals and manifest retries; a pass with nothing due costs little.
    this.ctx.interval(() => this.trigger.request(), Math.max(1000, Math.min(this.grantTtlMs / 4, RESOLVE_RETRY_MS)));
    this.trigger.request();
    const trigger = this.trigger;
    const resolving = this.resolving;
    return {
      stop: () => this.stop(),
      get busy() {
        return trigger.busy || resolving.size > 0;
      },
      idle: async () => {
        await Promise.all([...resolving.values()]);
        await trigger.idle();
      },
    };
  }

  private stop(): void {
    this.unsubscribe();
    this.trigger.close();
    // The orders are the manager's to clear when leadership ends (the board outlives this loop's
    // term only as long as the term); the jobs die with this loop.
    this.jobs.clear();
  }

  private onReport(nodeId: string, report: Parameters<PrefetchJob["applyReport"]>[1]): void {
    if (this.ctx.stopped) return;
    const job = this.jobs.get(report.jobId);
    if (job === undefined) return;
    const effect = job.applyReport(nodeId, report);
    if (effect.conflictingHashes > 0) {
      this.ctx.logger.warn({ event: "security", jobId: job.jobId, nodeId, conflicting: effect.conflictingHashes }, "a seed reported piece hashes that differ from the published ones; the blob digest decides which bytes are kept");
    }
    for (const bad of effect.excluded) {
      this.ctx.logger.warn({ event: "security", jobId: job.jobId, reportedBy: nodeId, excludedNodeId: bad }, "a node served a bad piece: excluded from the prefetch job");
    }
    if (effect.digestFailure) {
      const role = job.plan?.nodes.find((n) => n.nodeId === nodeId)?.role;
      if (job.attempt + 1 < MAX_PREFETCH_ATTEMPTS) {
        const excluded = job.restart(nodeId, role === "seed");
        this.ctx.logger.warn(
          { event: "security", jobId: job.jobId, reportedBy: nodeId, reporterRole: role ?? "unknown", excludedNodeIds: excluded, attempt: job.attempt },
          "a prefetched blob failed its digest: its hash sources are excluded and the job runs again on every node with new seeds",
        );
      } else {
        this.ctx.logger.warn({ jobId: job.jobId, reportedBy: nodeId, attempts: MAX_PREFETCH_ATTEMPTS }, "a prefetched blob failed its digest again; the job is not run again (its tasks pull the image themselves)");
      }
    }
    if (effect.ended) {
      const m = job.member(nodeId)!;
      this.ctx.logger.info({ jobId: job.jobId, nodeId, state: m.state, bytesFromPeers: m.bytesFromPeers, bytesFromRegistry: m.bytesFromRegistry }, "prefetch: a node's part ended");
    }
    this.trigger.request();
  }

  private async pass(): Promise<void> {
    const nowMs = this.ctx.clock.nowMs();
    const wanted = wantedJobs(this.ctx.store.listTasks());
    const wantedIds = new Set(wanted.map((w) => w.jobId));
    for (const w of wanted) {
      const job = this.jobs.get(w.jobId);
      if (job === undefined) {
        this.jobs.set(w.jobId, new PrefetchJob(w, nowMs));
        this.ctx.logger.info({ jobId: w.jobId, serviceId: w.serviceId, image: w.image, manifestDigest: w.manifestDigest, targets: w.targets.size }, "prefetch job started");
      } else {
        job.addTargets(w);
      }
    }
    for (const job of [...this.jobs.values()]) if (!wantedIds.has(job.jobId)) this.end(job, nowMs);
    for (const job of this.jobs.values()) {
      if (this.ctx.stopped) return;
      if (job.phase === "resolving") this.resolve(job, nowMs);
      else await this.publish(job, nowMs);
      const planNodes = job.planNodes((id) => this.ctx.store.getNode(id), this.isDown);
      if (job.checkComplete(planNodes, nowMs)) this.ctx.logger.info(job.metrics(nowMs), "prefetch job complete: every node holds the image");
      this.opts.views.set(job.view(planNodes));
    }
  }

  private resolve(job: PrefetchJob, nowMs: number): void {
    if (this.resolving.has(job.jobId) || (this.retryAtMs.get(job.jobId) ?? 0) > nowMs) return;
    const work = this.opts.images
      .image(job.image, job.manifestDigest)
      .then((image) => {
        if (image.blobs.length === 0 || image.blobs.length > MAX_BLOBS || image.blobs.some((b) => !Number.isSafeInteger(b.size) || b.size < 0)) {
          throw new Error(`the manifest lists ${image.blobs.length} blobs or a blob of an impossible size`);
        }
        job.resolved(image, this.pieceSize);
        this.retryAtMs.delete(job.jobId);
      })
      .catch((err: unknown) => {
        const code = isShoalError(err) ? err.code : "INTERNAL";
        job.resolveError = `${code}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500);
        this.retryAtMs.set(job.jobId, this.ctx.clock.nowMs() + RESOLVE_RETRY_MS);
        this.ctx.logger.warn({ jobId: job.jobId, image: job.image, code, err: job.resolveError }, "prefetch: cannot read the image's manifest; trying again later (the tasks pull it themselves if it does not come)");
      })
      .finally(() => {
        this.resolving.delete(job.jobId);
        this.trigger.request();
      });
    this.resolving.set(job.jobId, work);
  }

  /** Replans when the members' eligibility changed, then publishes the orders if they are due. */
  private async publish(job: PrefetchJob, nowMs: number): Promise<void> {
    const planNodes = job.planNodes((id) => this.ctx.store.getNode(id), this.isDown);
    const key = planKeyOf(planNodes);
    const replanned = key !== job.planKey;
    if (replanned) {
      job.plan = planPrefetch({
        jobId: job.jobId,
        targets: planNodes,
        ...(job.plan !== undefined ? { previous: job.plan } : {}),
        ...(this.opts.candidatesPerNode !== undefined ? { candidatesPerNode: this.opts.candidatesPerNode } : {}),
        random: this.ctx.random,
      });
      job.planKey = key;
      job.dirty = true;
    }
    const grantsDue = job.grantsExpireAtMs - nowMs < this.grantTtlMs / 2;
    if (!job.dirty && !grantsDue) return;
    const sinceLast = nowMs - job.lastPublishMs;
    if (!replanned && !grantsDue && sinceLast < this.publishIntervalMs) {
      // Only new piece hashes: wait for the rest of the interval, so a seed's stream of hashes
      // costs one order per node per interval, not one per report.
      if (!this.publishTimer) {
        this.publishTimer = true;
        this.ctx.timer(() => {
          this.publishTimer = false;
          this.trigger.request();
        }, this.publishIntervalMs - sinceLast);
      }
      return;
    }
    let access = this.seedAccess.get(job.image);
    if (access === undefined || grantsDue) {
      access = await this.opts.images.seedAccess(job.image, job.manifestDigest);
      this.seedAccess.set(job.image, access);
    }
    if (this.ctx.stopped || this.jobs.get(job.jobId) !== job) return;
    const orders = buildOrders({
      jobId: job.jobId,
      clusterId: this.opts.clusterId,
      image: job.image,
      manifestDigest: job.manifestDigest,
      manifest: job.manifest!,
      blobs: job.blobs,
      plan: job.plan!,
      nodes: new Map(planNodes.map((p) => [p.nodeId, p])),
      grantSigner: this.opts.grantSigner(),
      nowMs,
      grantTtlMs: this.grantTtlMs,
      seedAccess: access,
      attempt: job.attempt,
    });
    this.opts.board.publish(job.jobId, orders);
    job.grantsExpireAtMs = nowMs + this.grantTtlMs;
    job.lastPublishMs = nowMs;
    job.dirty = false;
    if (replanned) {
      const seeds = job.plan!.nodes.filter((n) => n.role === "seed").map((n) => n.nodeId);
      this.ctx.logger.info({ jobId: job.jobId, zones: job.plan!.zones, nodes: orders.length, seeds, left: planNodes.filter((p) => !isEligible(p)).map((p) => p.nodeId) }, "prefetch job planned");
    }
  }

  private end(job: PrefetchJob, nowMs: number): void {
    this.jobs.delete(job.jobId);
    this.retryAtMs.delete(job.jobId);
    this.opts.board.withdraw(job.jobId);
    this.opts.views.set(job.view(job.planNodes((id) => this.ctx.store.getNode(id), this.isDown), nowMs));
    this.ctx.logger.info(job.metrics(nowMs), "prefetch job ended: none of its tasks waits for the image any more");
    if (![...this.jobs.values()].some((j) => j.image === job.image)) this.seedAccess.delete(job.image);
  }
}

/** What a plan depends on: each member's zone, address and whether it may take part. */
function planKeyOf(nodes: readonly PlanNode[]): string {
  return nodes.map((p) => `${p.nodeId}|${p.zone}|${p.addr}|${isEligible(p) ? 1 : 0}`).join(",");
}
