// What the leader shows of its prefetch jobs (`shoal image prefetch status`): the prefetch loop
// sets a job's view whenever its state changes, and the control API reads them. Views of jobs that
// ended stay for a while (MAX_ENDED_VIEWS), so an operator can still see how the last ones went.
// Leader memory only, like the jobs themselves; cleared when leadership ends.
import type { PrefetchJobStatus } from "../../proto/shoal/v1/control.js";

export const MAX_ENDED_VIEWS = 64;

export interface PrefetchStatusSource {
  /** Running jobs first (by start), then ended ones, newest first. */
  list(): PrefetchJobStatus[];
}

export class PrefetchJobViews implements PrefetchStatusSource {
  private readonly running = new Map<string, PrefetchJobStatus>();
  private ended: PrefetchJobStatus[] = [];

  set(view: PrefetchJobStatus): void {
    this.ended = this.ended.filter((v) => v.jobId !== view.jobId);
    if (view.endedAt === undefined) {
      this.running.set(view.jobId, view);
      return;
    }
    this.running.delete(view.jobId);
    this.ended.unshift(view);
    if (this.ended.length > MAX_ENDED_VIEWS) this.ended.length = MAX_ENDED_VIEWS;
  }

  list(): PrefetchJobStatus[] {
    const running = [...this.running.values()].sort((a, b) => (a.startedAt?.getTime() ?? 0) - (b.startedAt?.getTime() ?? 0));
    return [...running, ...this.ended];
  }

  clear(): void {
    this.running.clear();
    this.ended = [];
  }
}
