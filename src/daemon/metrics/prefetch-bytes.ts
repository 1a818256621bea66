// Turns a worker's prefetch reports (per-blob progress, then a job's totals when it is done) into
// byte increments by source, for the `shoal_prefetch_bytes_total` counter: progress counts as it
// comes, a job's end adds what progress did not show, and a job reported again (a new leader asks
// for every ended job) adds nothing.
import type { PrefetchReport } from "../../agent/prefetch-runner.js";

export type PrefetchSource = "peer" | "registry";

/** Ended jobs remembered so that a repeated report adds nothing; beyond this, the oldest are forgotten. */
const MAX_ENDED_JOBS = 4096;

export class PrefetchByteCounter {
  /** Job ID → blob digest → bytes counted so far from peers and from the registry. */
  private readonly running = new Map<string, Map<string, { peer: number; registry: number }>>();
  private readonly ended = new Set<string>();

  constructor(private readonly add: (source: PrefetchSource, bytes: number) => void) {}

  report(event: PrefetchReport): void {
    if (event.kind === "progress") {
      if (this.ended.has(event.jobId)) return;
      let blobs = this.running.get(event.jobId);
      if (blobs === undefined) this.running.set(event.jobId, (blobs = new Map()));
      const seen = blobs.get(event.progress.digest) ?? { peer: 0, registry: 0 };
      this.addDelta("peer", event.progress.bytesFromPeers - seen.peer);
      this.addDelta("registry", event.progress.bytesFromOrigin - seen.registry);
      blobs.set(event.progress.digest, { peer: Math.max(seen.peer, event.progress.bytesFromPeers), registry: Math.max(seen.registry, event.progress.bytesFromOrigin) });
    } else if (event.kind === "done" || event.kind === "failed") {
      if (this.ended.has(event.jobId)) return;
      const blobs = this.running.get(event.jobId);
      this.running.delete(event.jobId);
      if (event.kind === "done") {
        let peer = 0;
        let registry = 0;
        for (const seen of blobs?.values() ?? []) {
          peer += seen.peer;
          registry += seen.registry;
        }
        this.addDelta("peer", event.bytesFromPeers - peer);
        this.addDelta("registry", event.bytesFromRegistry - registry);
      }
      this.ended.add(event.jobId);
      if (this.ended.size > MAX_ENDED_JOBS) this.ended.delete(this.ended.values().next().value!);
    }
  }

  private addDelta(source: PrefetchSource, bytes: number): void {
    if (bytes > 0) this.add(source, bytes);
  }
}
