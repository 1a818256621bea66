// A worker's side of prefetch jobs (DESIGN.md §8): for each PrefetchOrder a manager pushes, bring
// every blob of the image into the content store before its task starts — a seed from the
// registry (with the header its order carries, in memory only, dropped when the job ends), every
// other node from the peers of its zone its order names, each piece checked against the hash the
// manager published. Orders for a running job replace its candidates, grants and known hashes in
// place, so a replan, a renewed grant or newly published hashes reach downloads that are running.
// What happens is told to `report` (piece hashes from seeds, progress, bad peers, the end), which
// the wiring forwards to the manager. How a job ended is kept while it stays ordered, and told
// again (`reportEnded`) when a manager sends a complete set: a new leader publishes the same job
// IDs and would otherwise never hear that this node is done. Tasks waiting for their image watch
// the jobs by manifest digest (`jobFor`, `subscribe`; prefetch-wait.ts).
import type { Logger } from "pino";
import { pieceCountOf } from "../base/bitfield.js";
import type { Clock } from "../base/clock.js";
import { isShoalError, ShoalError } from "../base/errors.js";
import type { Random } from "../base/random.js";
import { pullRange } from "../oci/blob-pull.js";
import { parseImageReference } from "../oci/reference.js";
import { RegistryClient } from "../oci/registry-client.js";
import type { PrefetchOrder } from "../proto/shoal/v1/dispatcher.js";
import { fetchBlob, seedBlob, type BlobFetchProgress, type BlobFetchResult, type PeerAddress, type PeerFetcher, type PieceSink } from "./p2p/blob-fetch.js";

export type PrefetchReport =
  | { kind: "piece-hash"; jobId: string; digest: string; index: number; hash: string }
  | { kind: "progress"; jobId: string; progress: BlobFetchProgress }
  | { kind: "bad-peer"; jobId: string; digest: string; nodeId: string; piece: number; reason: string }
  | { kind: "done"; jobId: string; bytesFromPeers: number; bytesFromRegistry: number }
  | { kind: "failed"; jobId: string; code: string; message: string };

export interface PrefetchRunnerOptions {
  sink: PieceSink;
  /** Stores the order's manifest once its bytes match the digest (the content store's ensure). */
  storeManifest: (digest: string, bytes: Buffer) => Promise<void>;
  peer: PeerFetcher;
  clock: Clock;
  random: Random;
  logger: Logger;
  report: (event: PrefetchReport) => void;
  pieceTimeoutMs?: number;
  haveRefreshMs?: number;
  /** The registry's idle timeout for a seed's pulls. */
  registryIdleTimeoutMs?: number;
  /** Candidates this is true for are not asked (the node's revocation list: a removed node serves nothing). */
  isRevoked?: (nodeId: string) => boolean;
}

/** A job as a task waiting for its image sees it. */
export interface PrefetchJobState {
  jobId: string;
  manifestDigest: string;
  /** Bytes of every blob of the image. */
  totalBytes: number;
  /** Bytes held so far (blobs done, and verified pieces of the one being fetched). */
  heldBytes: number;
  fromPeers: number;
  fromRegistry: number;
  /** Undefined while the job runs. */
  ended?: { kind: "done" } | { kind: "failed"; code: string; message: string };
}

/** How a job ended here: what its report said, to say it again. */
type Outcome = { kind: "done"; bytesFromPeers: number; bytesFromRegistry: number } | { kind: "failed"; code: string; message: string };

interface EndedJob {
  /** The latest order of the job (it may change while the job stays ended, e.g. after a failover). */
  order: PrefetchOrder;
  outcome: Outcome;
  /** A seed's piece hashes, per blob: a new leader learns them only from its seeds' reports. */
  hashes?: Map<string, Array<string | undefined>>;
  state: PrefetchJobState;
}

interface Job {
  order: PrefetchOrder;
  abort: AbortController;
  /** Per blob digest: the hashes known so far (the downloader reads this array as it changes). */
  hashes: Map<string, Array<string | undefined>>;
  done: Promise<void>;
  /** Per blob digest: bytes held, and the latest progress of its download. */
  held: Map<string, number>;
  progress: Map<string, { peers: number; origin: number }>;
}

const DEFAULT_PIECE_TIMEOUT_MS = 30_000;
const DEFAULT_HAVE_REFRESH_MS = 250;

export class PrefetchRunner {
  private readonly jobs = new Map<string, Job>();
  /** Jobs that ended on this node (done or failed) and are still ordered: not started again. */
  private readonly ended = new Map<string, EndedJob>();
  /** The orders of the last sync (a restarted job takes the one ordered when its old run has stopped). */
  private latest: ReadonlyMap<string, PrefetchOrder> = new Map();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly opts: PrefetchRunnerOptions) {}

  /**
   * Brings the jobs in line with the orders the managers push now: new ones start, running ones
   * take their order's update, and jobs no longer ordered stop. A job that ended here is not
   * started again while it stays ordered (its report told the manager how it ended).
   */
  sync(orders: ReadonlyMap<string, PrefetchOrder>): void {
    this.latest = orders;
    for (const id of [...this.ended.keys()]) if (!orders.has(id)) this.ended.delete(id);
    for (const id of [...this.jobs.keys()]) if (!orders.has(id)) void this.stop(id);
    for (const order of orders.values()) {
      const ended = this.ended.get(order.jobId);
      const running = this.jobs.get(order.jobId);
      if (ended !== undefined && order.attempt > ended.order.attempt) {
        // The leader found the job's hashes wrong and runs it again: so does this node.
        this.ended.delete(order.jobId);
        this.apply(order);
      } else if (ended !== undefined) {
        ended.order = order;
      } else if (running !== undefined && (order.attempt > running.order.attempt || order.seed !== running.order.seed)) {
        // A higher attempt: its pieces were checked against hashes that proved wrong. A new role
        // (a replan made this peer a seed, or a seed a peer): a seed pulls from the registry and a
        // peer from its candidates, so the run in the old role cannot go on. Stop it (the partial
        // blob goes), then start again with the new order, if it is still the one ordered.
        void this.stop(order.jobId)
          .then(() => {
            const now = this.latest.get(order.jobId);
            if (now !== undefined && !this.jobs.has(order.jobId) && !this.ended.has(order.jobId)) this.apply(now);
          })
          .catch((err: unknown) => this.opts.logger.warn({ jobId: order.jobId, err: err instanceof Error ? err.message : String(err) }, "prefetch job could not start again"));
      } else {
        this.apply(order);
      }
    }
    this.changed();
  }

  /**
   * Tells again how every job that ended here and is still ordered ended: called when a manager
   * sends a complete set of assignments, which after a failover comes from a new leader that
   * rebuilt the same jobs and knows nothing of this node's part. A seed's piece hashes go first,
   * while its order still makes it a seed (the dispatcher takes hashes from seeds only).
   */
  reportEnded(): void {
    for (const [jobId, ended] of this.ended) {
      if (ended.hashes !== undefined && ended.order.seed) {
        for (const [digest, hashes] of ended.hashes) {
          hashes.forEach((hash, index) => {
            if (hash !== undefined) this.opts.report({ kind: "piece-hash", jobId, digest, index, hash });
          });
        }
      }
      this.opts.report({ jobId, ...ended.outcome });
    }
  }

  /** The job of the image `manifestDigest` on this node: one that is done first, else one running, else one that failed. */
  jobFor(manifestDigest: string): PrefetchJobState | undefined {
    let running: PrefetchJobState | undefined;
    let failed: PrefetchJobState | undefined;
    for (const ended of this.ended.values()) {
      if (ended.order.manifestDigest !== manifestDigest) continue;
      if (ended.outcome.kind === "done") return { ...ended.state };
      failed ??= ended.state;
    }
    for (const job of this.jobs.values()) if (job.order.manifestDigest === manifestDigest) running ??= this.stateOf(job);
    const found = running ?? failed;
    return found === undefined ? undefined : { ...found };
  }

  /** Calls `listener` after jobs start, progress, or end (and orders change); returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts the order's job, or brings a running one up to date with it. */
  apply(order: PrefetchOrder): void {
    const running = this.jobs.get(order.jobId);
    if (running !== undefined) {
      running.order = order;
      this.learnHashes(running, order);
      return;
    }
    const job: Job = { order, abort: new AbortController(), hashes: new Map(), done: Promise.resolve(), held: new Map(), progress: new Map() };
    for (const blob of order.blobs) job.hashes.set(blob.digest, Array.from({ length: pieceCountOf(Number(blob.size), blob.pieceSize) }, () => undefined));
    this.learnHashes(job, order);
    this.jobs.set(order.jobId, job);
    job.done = this.run(job);
  }

  /** Whether this node is a seed of an ordered job that has the blob (its peer server then hides what it sent). */
  isSeeding(digest: string): boolean {
    for (const job of this.jobs.values()) if (job.order.seed && job.order.blobs.some((b) => b.digest === digest)) return true;
    for (const ended of this.ended.values()) if (ended.order.seed && ended.order.blobs.some((b) => b.digest === digest)) return true;
    return false;
  }

  /** Ends a job (withdrawn by the manager, or done); its downloads stop and their partial blobs go. */
  async stop(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (job === undefined) return;
    this.jobs.delete(jobId);
    job.abort.abort(new ShoalError("UNAVAILABLE", `prefetch job ${jobId} was withdrawn`));
    await job.done;
  }

  async close(): Promise<void> {
    await Promise.all([...this.jobs.keys()].map((id) => this.stop(id)));
    this.listeners.clear();
  }

  private stateOf(job: Job, ended?: PrefetchJobState["ended"]): PrefetchJobState {
    let totalBytes = 0;
    let heldBytes = 0;
    let fromPeers = 0;
    let fromRegistry = 0;
    for (const blob of job.order.blobs) {
      totalBytes += Number(blob.size);
      heldBytes += job.held.get(blob.digest) ?? 0;
    }
    for (const p of job.progress.values()) {
      fromPeers += p.peers;
      fromRegistry += p.origin;
    }
    return { jobId: job.order.jobId, manifestDigest: job.order.manifestDigest, totalBytes, heldBytes, fromPeers, fromRegistry, ...(ended !== undefined ? { ended } : {}) };
  }

  private changed(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (err) {
        this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, "a prefetch job listener failed");
      }
    }
  }

  private progressed(job: Job, progress: BlobFetchProgress): void {
    const blob = job.order.blobs.find((b) => b.digest === progress.digest);
    if (blob !== undefined) job.held.set(blob.digest, Math.min(Number(blob.size), progress.piecesDone * blob.pieceSize));
    job.progress.set(progress.digest, { peers: progress.bytesFromPeers, origin: progress.bytesFromOrigin });
    this.opts.report({ kind: "progress", jobId: job.order.jobId, progress });
    this.changed();
  }

  private learnHashes(job: Job, order: PrefetchOrder): void {
    for (const blob of order.blobs) {
      const known = job.hashes.get(blob.digest);
      if (known === undefined) continue;
      blob.pieceHashes.forEach((h, i) => {
        if (i < known.length && h !== "") known[i] = h;
      });
    }
  }

  private async run(job: Job): Promise<void> {
    const { jobId } = job.order;
    let fromPeers = 0;
    let fromRegistry = 0;
    let outcome: Outcome | undefined;
    try {
      await this.opts.storeManifest(job.order.manifestDigest, Buffer.from(job.order.manifest));
      // Blobs one after another: each already uses the node's whole download across its peers.
      for (const [i, blob] of job.order.blobs.entries()) {
        job.abort.signal.throwIfAborted();
        const result = job.order.seed ? await this.seed(job, i) : await this.fetch(job, i);
        fromPeers += result.fromPeers;
        fromRegistry += result.fromOrigin;
        job.held.set(blob.digest, Number(blob.size));
        job.progress.set(blob.digest, { peers: result.fromPeers, origin: result.fromOrigin });
        this.changed();
      }
      // Stopped while its last step finished: a stopped run reports nothing.
      job.abort.signal.throwIfAborted();
      this.opts.logger.info({ jobId, fromPeers, fromRegistry, seed: job.order.seed }, "prefetch job done on this node");
      outcome = { kind: "done", bytesFromPeers: fromPeers, bytesFromRegistry: fromRegistry };
    } catch (err) {
      if (job.abort.signal.aborted) return;
      const code = isShoalError(err) ? err.code : "INTERNAL";
      const message = err instanceof Error ? err.message : String(err);
      this.opts.logger.warn({ jobId, code, err: message }, "prefetch job failed on this node");
      outcome = { kind: "failed", code, message };
    } finally {
      if (this.jobs.get(jobId) === job) {
        this.jobs.delete(jobId);
        if (outcome !== undefined) {
          const ended = outcome.kind === "done" ? { kind: "done" as const } : { kind: "failed" as const, code: outcome.code, message: outcome.message };
          this.ended.set(jobId, { order: job.order, outcome, ...(job.order.seed ? { hashes: job.hashes } : {}), state: this.stateOf(job, ended) });
        }
      }
      if (outcome !== undefined) this.opts.report({ jobId, ...outcome });
      this.changed();
    }
  }

  private grantOf(job: Job, digest: string): Uint8Array {
    const grant = job.order.grants.find((g) => g.blobDigest === digest)?.grant;
    if (grant === undefined) throw new ShoalError("FAILED_PRECONDITION", `prefetch job ${job.order.jobId} has no grant for blob ${digest}`);
    return grant;
  }

  private fetch(job: Job, i: number): Promise<BlobFetchResult> {
    const blob = job.order.blobs[i]!;
    const { jobId } = job.order;
    return fetchBlob({
      digest: blob.digest,
      size: Number(blob.size),
      pieceSize: blob.pieceSize,
      pieceHashes: job.hashes.get(blob.digest)!,
      // Asked on every round: a peer revoked mid-job is dropped at once, not at the next order.
      peers: (): PeerAddress[] => job.order.candidates.filter((c) => this.opts.isRevoked?.(c.nodeId) !== true).map((c) => ({ nodeId: c.nodeId, addr: c.addr })),
      grant: () => this.grantOf(job, blob.digest),
      sink: this.opts.sink,
      peer: this.opts.peer,
      clock: this.opts.clock,
      random: this.opts.random,
      pieceTimeoutMs: this.opts.pieceTimeoutMs ?? DEFAULT_PIECE_TIMEOUT_MS,
      haveRefreshMs: this.opts.haveRefreshMs ?? DEFAULT_HAVE_REFRESH_MS,
      signal: job.abort.signal,
      onBadPeer: (nodeId, piece, reason) => this.opts.report({ kind: "bad-peer", jobId, digest: blob.digest, nodeId, piece, reason }),
      onProgress: (progress) => this.progressed(job, progress),
      what: `image ${job.order.image}: blob ${blob.digest}`,
    });
  }

  private seed(job: Job, i: number): Promise<BlobFetchResult> {
    const blob = job.order.blobs[i]!;
    const { jobId } = job.order;
    const image = parseImageReference(job.order.image);
    const authorization = job.order.registryAuthorization;
    const ca = job.order.registryCaPem;
    // The header lives in this client, in memory, for this job only; it is never written or logged.
    const client = new RegistryClient({
      access: (registry) => (registry === image.registry ? { ...(authorization !== "" ? { authorization } : {}), ...(ca !== "" ? { ca } : {}) } : undefined),
      ...(this.opts.registryIdleTimeoutMs !== undefined ? { idleTimeoutMs: this.opts.registryIdleTimeoutMs } : {}),
    });
    const descriptor = { mediaType: "application/octet-stream", digest: blob.digest, size: Number(blob.size) };
    const known = job.hashes.get(blob.digest)!;
    return seedBlob({
      digest: blob.digest,
      size: Number(blob.size),
      pieceSize: blob.pieceSize,
      pieceHashes: known,
      sink: this.opts.sink,
      origin: (offset, length, signal) => pullRange(client, image, descriptor, { offset, length }, { clock: this.opts.clock, signal }),
      startPiece: job.order.originStartPieces[i] ?? 0,
      signal: job.abort.signal,
      onPieceHash: (index, hash) => {
        known[index] ??= hash;
        this.opts.report({ kind: "piece-hash", jobId, digest: blob.digest, index, hash });
      },
      onProgress: (progress) => this.progressed(job, progress),
      what: `image ${job.order.image}: blob ${blob.digest}`,
    });
  }
}
