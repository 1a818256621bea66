// ReportPrefetch to the dispatcher: what this node's part in each prefetch job did (DESIGN.md §8).
// Reports gather for a short window and go as one call per job: the piece hashes a seed read (all
// of them reach the manager, in calls of at most MAX_PIECE_HASHES_PER_CALL), the peers that served
// a bad piece, the job's byte totals so far (totals, not increments, so a lost call loses nothing)
// and, last, how the job ended. Kept across reconnects and manager failover until a manager took
// them; a manager that no longer knows the job (NOT_FOUND) ends its reports.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Clock, Timer } from "../base/clock.js";
import { PrefetchOutcome, type PrefetchBadPeer, type PrefetchPieceHash, type ReportPrefetchRequest, type ReportPrefetchResponse } from "../proto/shoal/v1/dispatcher.js";
import { unaryCall } from "../transport/client.js";
import { fromGrpcError } from "../transport/errors.js";
import type { PrefetchReport } from "./prefetch-runner.js";
import { CALL_DEADLINE_MS, type SessionLink } from "./session.js";
import { RETRYABLE } from "./status-reporter.js";

/** Below the dispatcher's MAX_PIECE_HASHES_PER_REPORT. */
export const MAX_PIECE_HASHES_PER_CALL = 2048;
const MAX_BAD_PEERS_PER_CALL = 32;
/** Jobs whose reports are kept at most (the oldest beyond it are dropped, with a warning). */
const MAX_JOBS = 256;
const BATCH_WINDOW_MS = 100;
const RETRY_MS = 500;

interface PendingJob {
  hashes: PrefetchPieceHash[];
  badPeers: PrefetchBadPeer[];
  /** Latest bytes per blob (the runner reports per blob). */
  perBlob: Map<string, { peers: number; origin: number }>;
  /** Totals the job's end reported (they replace the per-blob sums). */
  totals?: { peers: number; origin: number };
  outcome: PrefetchOutcome;
  failureCode: string;
  failureMessage: string;
  /** Something changed since the last call the manager took. */
  dirty: boolean;
  /** Counts the reports received, so a call knows whether more came while it was in flight. */
  generation: number;
}

export class PrefetchReporter {
  private readonly jobs = new Map<string, PendingJob>();
  private link: SessionLink | undefined;
  private timer: Timer | undefined;
  private flushing = false;
  private stopped = false;

  constructor(private readonly opts: { clock: Clock; logger: Logger }) {}

  report(event: PrefetchReport): void {
    if (this.stopped) return;
    const job = this.jobOf(event.jobId);
    switch (event.kind) {
      case "piece-hash":
        job.hashes.push({ blobDigest: event.digest, index: event.index, hash: event.hash });
        break;
      case "progress":
        job.perBlob.set(event.progress.digest, { peers: event.progress.bytesFromPeers, origin: event.progress.bytesFromOrigin });
        break;
      case "bad-peer":
        job.badPeers.push({ blobDigest: event.digest, nodeId: event.nodeId, piece: event.piece, reason: event.reason });
        break;
      case "done":
        job.totals = { peers: event.bytesFromPeers, origin: event.bytesFromRegistry };
        job.outcome = PrefetchOutcome.PREFETCH_OUTCOME_DONE;
        break;
      case "failed":
        job.outcome = PrefetchOutcome.PREFETCH_OUTCOME_FAILED;
        job.failureCode = event.code;
        job.failureMessage = event.message.slice(0, 900);
        break;
    }
    job.dirty = true;
    job.generation++;
    this.schedule(BATCH_WINDOW_MS);
  }

  /** Jobs with reports not yet taken by a manager (tests and diagnostics). */
  get pendingJobs(): number {
    return [...this.jobs.values()].filter((j) => j.dirty).length;
  }

  connected(link: SessionLink): void {
    this.link = link;
    this.schedule(0);
  }

  disconnected(): void {
    this.link = undefined;
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private jobOf(jobId: string): PendingJob {
    let job = this.jobs.get(jobId);
    if (job === undefined) {
      if (this.jobs.size >= MAX_JOBS) {
        const oldest = this.jobs.keys().next().value as string;
        this.jobs.delete(oldest);
        this.opts.logger.warn({ jobId: oldest }, "too many prefetch jobs with reports waiting for a manager; dropped the oldest");
      }
      job = { hashes: [], badPeers: [], perBlob: new Map(), outcome: PrefetchOutcome.PREFETCH_OUTCOME_RUNNING, failureCode: "", failureMessage: "", dirty: false, generation: 0 };
      this.jobs.set(jobId, job);
    }
    return job;
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer !== undefined || this.flushing || this.link === undefined || this.pendingJobs === 0) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  private async flush(): Promise<void> {
    const link = this.link;
    if (link === undefined || this.flushing || this.stopped) return;
    this.flushing = true;
    let retryMs = BATCH_WINDOW_MS;
    try {
      for (const [jobId, job] of [...this.jobs]) {
        if (!job.dirty) continue;
        const request = this.requestOf(link, jobId, job);
        const generation = job.generation;
        try {
          await this.send(link, request);
          this.settle(jobId, job, request, generation);
        } catch (err) {
          const shoal = fromGrpcError(err);
          if (RETRYABLE.has(shoal.code) && shoal.code !== "NOT_FOUND") {
            this.opts.logger.debug({ code: shoal.code, jobId }, "prefetch report not taken; retrying");
            retryMs = RETRY_MS;
            break;
          }
          // The manager does not know the job (ended, replanned without this node) or refused the report.
          this.jobs.delete(jobId);
          this.opts.logger.warn({ jobId, code: shoal.code, message: shoal.message }, "the manager refused a prefetch report; dropped the job's reports");
        }
      }
    } finally {
      this.flushing = false;
    }
    if (this.link !== undefined && this.link !== link) retryMs = 0;
    this.schedule(retryMs);
  }

  private requestOf(link: SessionLink, jobId: string, job: PendingJob): ReportPrefetchRequest {
    const hashes = job.hashes.slice(0, MAX_PIECE_HASHES_PER_CALL);
    const badPeers = job.badPeers.slice(0, MAX_BAD_PEERS_PER_CALL);
    // The end goes only with the last of the hashes and bad peers.
    const last = hashes.length === job.hashes.length && badPeers.length === job.badPeers.length;
    let peers = 0;
    let origin = 0;
    for (const b of job.perBlob.values()) {
      peers += b.peers;
      origin += b.origin;
    }
    if (job.totals !== undefined) ({ peers, origin } = job.totals);
    const outcome = last ? job.outcome : PrefetchOutcome.PREFETCH_OUTCOME_RUNNING;
    return {
      sessionId: link.sessionId,
      jobId,
      pieceHashes: hashes,
      badPeers,
      bytesFromPeers: BigInt(peers),
      bytesFromRegistry: BigInt(origin),
      outcome,
      failureCode: outcome === PrefetchOutcome.PREFETCH_OUTCOME_FAILED ? job.failureCode : "",
      failureMessage: outcome === PrefetchOutcome.PREFETCH_OUTCOME_FAILED ? job.failureMessage : "",
    };
  }

  /** Drops what the manager took; a job whose end was taken is done with. */
  private settle(jobId: string, job: PendingJob, sent: ReportPrefetchRequest, generation: number): void {
    job.hashes.splice(0, sent.pieceHashes.length);
    job.badPeers.splice(0, sent.badPeers.length);
    if (sent.outcome !== PrefetchOutcome.PREFETCH_OUTCOME_RUNNING) {
      this.jobs.delete(jobId);
      return;
    }
    // Anything that arrived during the call (or did not fit in it) makes the job dirty again.
    job.dirty = job.hashes.length > 0 || job.badPeers.length > 0 || job.generation !== generation;
  }

  private send(link: SessionLink, request: ReportPrefetchRequest): Promise<ReportPrefetchResponse> {
    return unaryCall<ReportPrefetchResponse>((cb) => link.dispatcher.reportPrefetch(request, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
  }
}
