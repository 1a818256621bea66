// `shoal image prefetch status [SERVICE]`: the leader's P2P prefetch jobs (DESIGN.md §8), per node:
// bytes from peers, bytes from the registry, progress. On a terminal it redraws every REFRESH_MS
// until every job shown has ended, then leaves the final table; piped, or with --format json, it
// prints once. Ctrl-C stops watching (the jobs go on) and exits 0 with the last frame on screen.
import type { Command } from "commander";
import { systemClock } from "../../base/clock.js";
import type { PrefetchJobStatus } from "../../proto/shoal/v1/control.js";
import { formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import type { DaemonClient } from "../daemon-client.js";
import { pollLive } from "../live.js";
import { jobEnded, prefetchJobView, redraw, renderPrefetchStatus, type PrefetchJobView } from "../prefetch-view.js";
import { resolveService } from "../resolve.js";

const STATUS_HELP = `
Per job: the service (its ID when the service is gone), the spec version, the image and the
manifest digest it resolved to, the job's state (resolving, running, done, failed, ended), the
image's size and how long ago the job started. Per node: its hostname (or ID), zone, role (seed:
pulls from the registry; peer: fetches from the seeds and peers of its zone), state, the bytes it
got from peers and from the registry, progress as (peers + registry) / size, and why it failed.
On a terminal the display refreshes until every job shown has ended (Ctrl-C stops watching and
exits 0; the jobs go on); piped, it prints once.
--format json prints the jobs once, with sizes in bytes and times in ISO 8601.`;

/** Service names and node hostnames by ID, asked again only when an ID not asked about yet shows up. */
class Names {
  private readonly services = new Map<string, string>();
  private readonly nodes = new Map<string, string>();
  private readonly askedServices = new Set<string>();
  private readonly askedNodes = new Set<string>();

  constructor(private readonly daemon: DaemonClient) {}

  async learn(jobs: readonly PrefetchJobStatus[]): Promise<void> {
    const serviceIds = jobs.map((j) => j.serviceId);
    const nodeIds = jobs.flatMap((j) => j.nodes.map((n) => n.nodeId));
    const loads: Promise<void>[] = [];
    if (serviceIds.some((id) => !this.askedServices.has(id))) {
      loads.push(
        this.daemon.listServices().then(
          (services) => services.forEach((s) => this.services.set(s.id, s.spec?.name ?? "")),
          () => {}, // names are a convenience: without them the table shows IDs
        ),
      );
    }
    if (nodeIds.some((id) => !this.askedNodes.has(id))) {
      loads.push(
        this.daemon.listNodes().then(
          (nodes) => nodes.forEach((n) => this.nodes.set(n.id, n.description?.hostname ?? "")),
          () => {},
        ),
      );
    }
    await Promise.all(loads);
    serviceIds.forEach((id) => this.askedServices.add(id));
    nodeIds.forEach((id) => this.askedNodes.add(id));
  }

  views(jobs: readonly PrefetchJobStatus[]): PrefetchJobView[] {
    return jobs.map((j) =>
      prefetchJobView(
        j,
        (id) => this.services.get(id) ?? "",
        (id) => this.nodes.get(id) ?? "",
      ),
    );
  }
}

/**
 * Redraws `load`'s jobs every REFRESH_MS until every one has ended (then the final frame, whole) or
 * Ctrl-C (the last frame stays). An error of the daemon ends it with that error.
 */
async function watch(ctx: CommandContext, load: () => Promise<PrefetchJobView[]>): Promise<void> {
  const clock = ctx.io.clock ?? systemClock;
  let rows = 0;
  await pollLive(ctx.io, load, (views) => {
    const final = views.every(jobEnded);
    const frame = redraw(rows, renderPrefetchStatus(views, clock.nowMs()), { columns: ctx.io.columns?.(), final });
    ctx.io.stdout(frame.output);
    rows = frame.rows;
    return final;
  });
}

export function registerImageCommands(program: Command, ctx: CommandContext): void {
  const image = program.command("image").description("images: P2P prefetch before tasks start");
  const prefetch = image.command("prefetch").description("the leader's P2P prefetch jobs");

  prefetch
    .command("status")
    .description("show prefetch jobs, of one service or of all: per node, bytes from peers and from the registry, progress")
    .argument("[service]", "service name or ID (default: every job)")
    .addOption(formatOption())
    .addHelpText("after", STATUS_HELP)
    .action(async (ref: string | undefined, opts: { format: OutputFormat }) => {
      const daemon = ctx.daemon();
      // Resolved here as every command does (name, ID or unique ID prefix), then asked by ID.
      const serviceId = ref === undefined ? "" : (await resolveService(daemon, ref)).id;
      const names = new Names(daemon);
      const load = async (): Promise<PrefetchJobView[]> => {
        const jobs = await daemon.listPrefetchJobs(serviceId);
        await names.learn(jobs);
        return names.views(jobs);
      };
      if (opts.format === "json") printJson(ctx.io, await load());
      else if (ctx.io.stdoutIsTTY === true) await watch(ctx, load);
      else ctx.io.stdout(renderPrefetchStatus(await load(), (ctx.io.clock ?? systemClock).nowMs()));
    });
}
