// After `service create` / `service update`: watch the service until the spec version the command
// wrote has converged (exit 0), one of its tasks fails or is rejected or its update pauses or is
// rolled back (the reason on stderr, exit 1), or WAIT_BOUND_MS pass (exit 3; the tasks go on).
// On a terminal a live display is redrawn every REFRESH_MS on stdout, below the service ID; Ctrl-C
// stops watching (exit 0, the service stays). Elsewhere ("lines", with --wait) one line per task
// state change goes to stderr, so that stdout still holds only the service ID.
import { systemClock } from "../../base/clock.js";
import { isShoalError, ShoalError } from "../../base/errors.js";
import { escapeUnsafeChars as shown } from "../../base/text.js";
import type { Service, Task } from "../../proto/shoal/v1/objects.js";
import type { CommandContext } from "../context.js";
import type { DaemonClient } from "../daemon-client.js";
import { CommandFailed, EXIT_GENERIC, EXIT_UNAVAILABLE, exitCodeFor } from "../exit-codes.js";
import { pollLive } from "../live.js";
import { prefetchJobView, redraw, type PrefetchJobView } from "../prefetch-view.js";
import {
  convergence,
  failedTasks,
  failureSentence,
  headLine,
  latestPrefetchJob,
  progressRows,
  renderServiceProgress,
  stateChangeLines,
  type WatchTarget,
} from "../service-progress.js";

/** How long a create or update waits for its tasks before it gives up watching (they go on). */
export const WAIT_BOUND_MS = 10 * 60_000;

export type WatchMode = "live" | "lines";

export interface WatchOptions {
  /** The service as the create or update call returned it. */
  service: Service;
  mode: WatchMode;
  /**
   * The update changed nothing (the spec version stayed): failures already there at the first look
   * are history, not this command's.
   */
  ignoreEarlierFailures?: boolean;
}

interface Snapshot {
  service: Service;
  tasks: Task[];
  jobs: PrefetchJobView[];
}

/** Node hostnames by ID, asked again only when an ID not asked about yet shows up. */
class Hostnames {
  private readonly names = new Map<string, string>();
  private readonly asked = new Set<string>();

  constructor(private readonly daemon: DaemonClient) {}

  async learn(nodeIds: readonly string[]): Promise<void> {
    const fresh = nodeIds.filter((id) => id !== "" && !this.asked.has(id));
    if (fresh.length === 0) return;
    try {
      for (const n of await this.daemon.listNodes()) this.names.set(n.id, n.description?.hostname ?? "");
    } catch {
      // names are a convenience: without them the display shows node IDs
    }
    fresh.forEach((id) => this.asked.add(id));
  }

  of = (id: string): string => this.names.get(id) ?? "";
}

async function load(daemon: DaemonClient, serviceId: string, hostnames: Hostnames): Promise<Snapshot> {
  const [service, tasks, jobs] = await Promise.all([
    daemon.getService(serviceId),
    daemon.listTasks({ serviceId, nodeId: "" }),
    // Prefetch totals are extra: a leader without jobs (or that cannot list them) shows none.
    daemon.listPrefetchJobs(serviceId).catch(() => []),
  ]);
  await hostnames.learn([...tasks.map((t) => t.nodeId), ...jobs.flatMap((j) => j.nodes.map((n) => n.nodeId))]);
  const name = service.spec?.name ?? "";
  return { service, tasks, jobs: jobs.map((j) => prefetchJobView(j, () => name, hostnames.of)) };
}

/**
 * A look that failed for a moment (no leader during a failover, a full queue): skipped, the last
 * frame stays and the next look comes as usual, within the bound. Anything else ends the watch.
 */
async function loadOrSkip(daemon: DaemonClient, serviceId: string, hostnames: Hostnames): Promise<Snapshot | undefined> {
  try {
    return await load(daemon, serviceId, hostnames);
  } catch (err) {
    if (isShoalError(err) && exitCodeFor(err.code) === EXIT_UNAVAILABLE) return undefined;
    throw err;
  }
}

function minutes(ms: number): string {
  return `${Math.round(ms / 60_000)} minutes`;
}

export async function watchService(ctx: CommandContext, daemon: DaemonClient, opts: WatchOptions): Promise<void> {
  const { io } = ctx;
  const clock = io.clock ?? systemClock;
  const startedMs = clock.nowMs();
  const serviceId = opts.service.id;
  const name = shown(opts.service.spec?.name ?? serviceId);
  const hostnames = new Hostnames(daemon);
  const seen = new Map<string, string>();
  let target: WatchTarget = { specVersion: opts.service.specVersion };
  let first = true;
  let rows = 0;

  const end = await pollLive(
    io,
    () => loadOrSkip(daemon, serviceId, hostnames),
    (snap) => {
      if (snap === undefined) {
        if (clock.nowMs() - startedMs < WAIT_BOUND_MS) return false;
        throw new ShoalError("TIMEOUT", `${name}: the managers did not answer for ${minutes(WAIT_BOUND_MS)}; stopped watching: see \`shoal service ps ${name}\``);
      }
      if (first && opts.ignoreEarlierFailures === true) target = { ...target, pastFailures: new Set(failedTasks(snap.service, snap.tasks, target).map((t) => t.id)) };
      first = false;
      const c = convergence(snap.service, snap.tasks, target);
      const taskRows = progressRows(snap.service, snap.tasks, target, hostnames.of);
      const timedOut = c.kind === "waiting" && clock.nowMs() - startedMs >= WAIT_BOUND_MS;
      const final = c.kind !== "waiting" || timedOut;
      if (opts.mode === "live") {
        const frame = redraw(rows, renderServiceProgress(name, c, taskRows, latestPrefetchJob(snap.jobs)), { columns: io.columns?.(), final });
        io.stdout(frame.output);
        rows = frame.rows;
      } else {
        for (const line of stateChangeLines(seen, taskRows)) io.stderr(`${line}\n`);
        if (c.kind === "converged") io.stderr(`${headLine(name, c)}\n`);
      }
      if (c.kind === "failed") throw new CommandFailed(failureSentence(name, c, taskRows), EXIT_GENERIC);
      if (timedOut) {
        throw new ShoalError(
          "TIMEOUT",
          `${headLine(name, c)} after ${minutes(WAIT_BOUND_MS)}; stopped watching, the tasks go on: see \`shoal service ps ${name}\``,
        );
      }
      return c.kind === "converged";
    },
  );
  if (end === "interrupted") io.stderr(`\nstopped watching: service ${name} stays and its tasks go on; see \`shoal service ps ${name}\`\n`);
}
