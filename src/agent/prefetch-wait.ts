// A task's image waits for its prefetch job (DESIGN.md §8: a task enters STARTING only when its
// image is complete and verified). Wraps the node's ImageProvider: when the session says the
// leader runs the prefetch loop and the image is not whole on the node yet, prepareRootfs waits a
// short while (ORDER_WAIT_MS) for an order of the task's manifest digest, then for that job to end
// here, showing its progress as the task's PREPARING message (at most once per
// PROGRESS_INTERVAL_MS). Then the wrapped provider builds the rootfs: after a job that is done it
// finds everything in the content store and asks no registry; after a failed job, or no order in
// time, it pulls what is missing itself, as it does without prefetch. An order withdrawn while it
// runs (a failover: the new leader republishes it) opens a new wait of ORDER_WAIT_MS.
import type { Logger } from "pino";
import type { Clock, Timer } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import type { ImageConfig, ImageProvider } from "./executor/executor.js";
import type { PrefetchJobState } from "./prefetch-runner.js";

/** How long a task waits for an order of its image before it pulls the image itself. */
export const ORDER_WAIT_MS = 10_000;
/** PREPARING progress messages at most this often. */
export const PROGRESS_INTERVAL_MS = 1_000;

/** The prefetch jobs as the PrefetchRunner shows them. */
export interface PrefetchJobs {
  jobFor(manifestDigest: string): PrefetchJobState | undefined;
  subscribe(listener: () => void): () => void;
}

export interface PrefetchWaitOptions {
  /** Builds the rootfs: from the content store, pulling from the registry what is missing. */
  images: ImageProvider;
  jobs: PrefetchJobs;
  /** SessionMessage.prefetch of the current session: whether an order is to be expected at all. */
  enabled: () => boolean;
  /** Whether the whole image is on the node already (then nothing is waited for). */
  holds?: (digest: string) => Promise<boolean>;
  clock: Clock;
  logger: Logger;
  orderWaitMs?: number;
  progressIntervalMs?: number;
}

type WaitOutcome = { kind: "done" } | { kind: "fallback"; reason: string };

const MIB = 1024 * 1024;

/** "40 MiB", "3.5 MiB", "512 KiB": what a PREPARING message can show in a few characters. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${Math.round(bytes / 1024)} KiB`;
  const mib = bytes / MIB;
  return `${mib < 10 ? mib.toFixed(1).replace(/\.0$/, "") : Math.round(mib)} MiB`;
}

/** "prefetching image: 40 of 64 MiB (peers 32 MiB, registry 8 MiB)" */
export function progressMessage(state: PrefetchJobState): string {
  const total = formatBytes(state.totalBytes);
  let held = formatBytes(state.heldBytes);
  const unit = total.slice(total.indexOf(" "));
  if (held.endsWith(unit)) held = held.slice(0, -unit.length);
  return `prefetching image: ${held} of ${total} (peers ${formatBytes(state.fromPeers)}, registry ${formatBytes(state.fromRegistry)})`;
}

export class PrefetchWaitingImages implements ImageProvider {
  private readonly log: Logger;

  constructor(private readonly opts: PrefetchWaitOptions) {
    this.log = opts.logger.child({ component: "prefetch-wait" });
  }

  async prepareRootfs(req: { image: string; digest: string; rootfsDir: string; progress?: (message: string) => void; signal?: AbortSignal }): Promise<ImageConfig> {
    if (this.opts.enabled() && !(await this.held(req.digest))) {
      const outcome = await this.waitForJob(req.digest, req.progress, req.signal);
      if (outcome.kind === "fallback") {
        this.log.info({ digest: req.digest, reason: outcome.reason }, "pulling the image from the registry without its prefetch job");
        req.progress?.(`pulling image from the registry (${outcome.reason})`);
      }
    }
    return this.opts.images.prepareRootfs(req);
  }

  private async held(digest: string): Promise<boolean> {
    try {
      return (await this.opts.holds?.(digest)) ?? false;
    } catch {
      return false;
    }
  }

  /** Settles when the image's job is done here, or with why not (no order in time, the job failed). */
  private waitForJob(digest: string, progress: ((message: string) => void) | undefined, signal: AbortSignal | undefined): Promise<WaitOutcome> {
    const { clock } = this.opts;
    const orderWaitMs = this.opts.orderWaitMs ?? ORDER_WAIT_MS;
    const intervalMs = this.opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
    return new Promise<WaitOutcome>((resolve, reject) => {
      let settled = false;
      let orderTimer: Timer | undefined;
      let progressTimer: Timer | undefined;
      let lastShownMs = -Infinity;
      let lastShown = "";
      let seenJob = false;
      const finish = (outcome: WaitOutcome | ShoalError): void => {
        if (settled) return;
        settled = true;
        unsubscribe();
        orderTimer?.cancel();
        progressTimer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        if (outcome instanceof ShoalError) reject(outcome);
        else resolve(outcome);
      };
      const onAbort = (): void => finish(new ShoalError("UNAVAILABLE", "the task was stopped while its image was being prefetched"));
      const show = (): void => {
        progressTimer = undefined;
        const state = this.opts.jobs.jobFor(digest);
        if (settled || state === undefined || state.ended !== undefined) return;
        const message = progressMessage(state);
        if (message === lastShown) return;
        lastShown = message;
        lastShownMs = clock.nowMs();
        progress?.(message);
      };
      const waitForOrder = (): void => {
        orderTimer?.cancel();
        orderTimer = clock.setTimeout(() => {
          if (this.opts.jobs.jobFor(digest) === undefined) finish({ kind: "fallback", reason: `no prefetch order for it within ${Math.round(orderWaitMs / 1000)} s` });
        }, orderWaitMs);
      };
      const check = (): void => {
        if (settled) return;
        const state = this.opts.jobs.jobFor(digest);
        if (state === undefined) {
          if (seenJob) {
            // Withdrawn while it ran (a new leader republishes the same job): wait for it anew.
            seenJob = false;
            waitForOrder();
          }
          return;
        }
        if (!seenJob) {
          seenJob = true;
          orderTimer?.cancel();
          orderTimer = undefined;
        }
        if (state.ended?.kind === "done") return finish({ kind: "done" });
        if (state.ended?.kind === "failed") return finish({ kind: "fallback", reason: `its prefetch job failed: ${state.ended.code}` });
        // At most one message per interval; the latest state shows when the interval is over.
        if (progressTimer === undefined) progressTimer = clock.setTimeout(show, Math.max(0, lastShownMs + intervalMs - clock.nowMs()));
      };
      const unsubscribe = this.opts.jobs.subscribe(check);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      waitForOrder();
      check();
    });
  }
}
