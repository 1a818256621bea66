// Which prefetch jobs the tasks in the store call for (DESIGN.md §8): one job per (service, spec
// version, image digest), whose targets are the nodes its tasks are assigned to while those tasks
// have not started yet. Pure, and deterministic in its job IDs, so a new leader rebuilds from the
// store the same jobs the old one ran (the nodes' orders keep their IDs across a failover).
import { TaskState, type Task } from "../../proto/shoal/v1/objects.js";

export interface WantedJob {
  jobId: string;
  serviceId: string;
  specVersion: bigint;
  /** The image as the service names it (registry/repository[:tag]). */
  image: string;
  manifestDigest: string;
  /** Target node → the zone its task is for (the planner groups by it). */
  targets: Map<string, string>;
}

/** States in which a task's node still needs its image: assigned, and not yet starting. */
const WAITING: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_ASSIGNED, TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_PREPARING]);
const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** `<service id>.<spec version>.<first 16 hex of the digest>`: stable for the same inputs. */
export function prefetchJobId(serviceId: string, specVersion: bigint, digest: string): string {
  const hex = DIGEST.exec(digest)?.[1] ?? "";
  return `${serviceId}.${specVersion}.${hex.slice(0, 16)}`;
}

export function wantedJobs(tasks: Iterable<Task>): WantedJob[] {
  const jobs = new Map<string, WantedJob>();
  for (const task of tasks) {
    const digest = task.spec?.imageDigest ?? "";
    if (task.executor !== "runc" || !DIGEST.test(digest) || task.nodeId === "") continue;
    if (task.desiredState !== TaskState.TASK_STATE_RUNNING || !WAITING.has(task.status?.state ?? TaskState.TASK_STATE_NEW)) continue;
    const jobId = prefetchJobId(task.serviceId, task.specVersion, digest);
    let job = jobs.get(jobId);
    if (job === undefined) {
      job = { jobId, serviceId: task.serviceId, specVersion: task.specVersion, image: task.spec!.image, manifestDigest: digest, targets: new Map() };
      jobs.set(jobId, job);
    }
    job.targets.set(task.nodeId, task.zone);
  }
  return [...jobs.values()].sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
}
