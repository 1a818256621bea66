// The chaos run's fault scheduler: SIGKILLs a random manager (the leader half of the time), or
// SIGSTOPs one for a few seconds and then SIGCONTs it, and restarts killed ones after a while,
// never letting more than `maxDown` managers be down (killed, restarting or stopped) at once.
import type { Random } from "../../src/base/random.js";
import type { NodeProcess } from "../lib/process-cluster.js";
import { sleep } from "../lib/wait.js";

export type FaultKind = "kill" | "pause";

/** A restart on a loaded 2-core machine can take tens of seconds (tsx compiles at every start). */
export const RESTART_TIMEOUT_MS = 120_000;

export interface FaultRecord {
  kind: FaultKind;
  node: string;
  wasLeader: boolean;
  atMs: number;
  /** When the node was back (restarted and answering, or continued). */
  recoveredAtMs?: number;
  /** A restart that failed (the run then fails). */
  error?: string;
}

export interface FaultOptions {
  faults: number;
  managers: readonly NodeProcess[];
  maxDown: number;
  random: Random;
  nowMs: () => number;
  /** Gap between faults, ms. */
  gapMs: [number, number];
  /** How long a killed node stays down before its restart, ms. */
  downMs: [number, number];
  /** How long a SIGSTOP lasts, ms. */
  pauseMs: [number, number];
  log: (line: string) => void;
}

/** Which running, unpaused manager leads, asking each with a short timeout; undefined if none answers. */
async function currentLeader(managers: readonly NodeProcess[]): Promise<NodeProcess | undefined> {
  for (const m of managers) {
    if (!m.running || m.isPaused) continue;
    try {
      const info = await Promise.race([m.info(), sleep(1000).then(() => undefined)]);
      if (info === undefined || info.leaderNodeId === "") continue;
      const leader = managers.find((n) => n.addr === info.leaderAddr);
      if (leader !== undefined && leader.running && !leader.isPaused) return leader;
    } catch {
      // restarting; ask the next one
    }
  }
  return undefined;
}

export class FaultScheduler {
  readonly records: FaultRecord[] = [];
  private readonly down = new Set<NodeProcess>();
  private readonly recoveries: Promise<void>[] = [];

  constructor(private readonly opts: FaultOptions) {}

  private between([lo, hi]: [number, number]): number {
    return this.opts.random.int(lo, hi + 1);
  }

  /** Runs every fault, then waits until every manager is back. Resolves with the records. */
  async run(): Promise<FaultRecord[]> {
    const { random, managers } = this.opts;
    while (this.records.length < this.opts.faults) {
      await sleep(this.between(this.opts.gapMs));
      if (this.down.size >= this.opts.maxDown) continue;
      const up = managers.filter((m) => !this.down.has(m));
      const leader = await currentLeader(up);
      const target = leader !== undefined && random.float() < 0.5 ? leader : up[random.int(0, up.length)]!;
      if (this.down.has(target)) continue;
      const kind: FaultKind = random.float() < 0.5 ? "kill" : "pause";
      const record: FaultRecord = { kind, node: target.name, wasLeader: target === leader, atMs: Math.round(this.opts.nowMs()) };
      this.records.push(record);
      this.down.add(target);
      this.opts.log(`fault ${this.records.length}/${this.opts.faults}: ${kind} ${target.name}${record.wasLeader ? " (leader)" : ""}; ${this.down.size} down`);
      if (kind === "kill") {
        await target.stop("SIGKILL");
        this.recoveries.push(this.restartLater(target, record));
      } else {
        target.pause();
        this.recoveries.push(this.resumeLater(target, record));
      }
    }
    await Promise.all(this.recoveries);
    return this.records;
  }

  private async restartLater(node: NodeProcess, record: FaultRecord): Promise<void> {
    await sleep(this.between(this.opts.downMs));
    try {
      await node.start(RESTART_TIMEOUT_MS);
      record.recoveredAtMs = Math.round(this.opts.nowMs());
    } catch (err) {
      record.error = err instanceof Error ? err.message : String(err);
      this.opts.log(`restart of ${node.name} failed: ${record.error}`);
    } finally {
      this.down.delete(node);
    }
  }

  private async resumeLater(node: NodeProcess, record: FaultRecord): Promise<void> {
    await sleep(this.between(this.opts.pauseMs));
    node.resume();
    record.recoveredAtMs = Math.round(this.opts.nowMs());
    this.down.delete(node);
  }
}
