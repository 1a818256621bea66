// Leader loop: services become tasks. Every pass reconciles each service against the store
// (reconcile.ts, removal.ts) and commits the plan in proposals of at most ORCHESTRATOR_BATCH_ACTIONS
// actions, re-planning inside each transaction so a retry after a conflict works on fresh state.
import type { Timer } from "../../base/clock.js";
import { isShoalError } from "../../base/errors.js";
import { TaskState, type Node, type Service, type Task } from "../../proto/shoal/v1/objects.js";
import { isTerminalState, ReconcileTrigger, type LeaderLoop, type LeaderLoopFactory, type LoopContext, type StoreTransaction } from "../../state/index.js";
import { ImageDigests, type ImageResolver } from "./image-digests.js";
import { MAX_PROPOSAL_BYTES } from "../../state/index.js";
import { unitBytes, unitSize, type ServicePlan } from "./plan.js";
import { reconcileService } from "./reconcile.js";
import { planRemoval } from "./removal.js";

export { pinnedDigestResolver, type ImageResolver } from "./image-digests.js";

/** Actions per proposal: tasks encode to well under 1 KiB each, far below the proposal limit. */
export const ORCHESTRATOR_BATCH_ACTIONS = 500;
/** Bytes of tasks per proposal: half the store's limit leaves room for framing and the service. */
const BATCH_BYTES = MAX_PROPOSAL_BYTES / 2;
/** Services remembered as changed; beyond this a pass looks at every service. */
const MAX_DIRTY_SERVICES = 10_000;
/** Services reconciled side by side in one pass. */
const SERVICES_IN_FLIGHT = 16;
/** Proposals one service may take in one pass (10,000 replicas need 20). */
const MAX_ROUNDS_PER_SERVICE = 64;

export interface OrchestratorOptions {
  resolveImage: ImageResolver;
  batchActions?: number;
}

export function orchestratorLoop(options: OrchestratorOptions): LeaderLoopFactory {
  return { name: "orchestrator", start: (ctx) => new Orchestrator(ctx, options) };
}

class Orchestrator implements LeaderLoop {
  private readonly trigger: ReconcileTrigger;
  private readonly images: ImageDigests;
  /** When this leader first saw each task RUNNING (update delays and monitor windows). */
  private readonly runningSince = new Map<string, number>();
  private wakeTimer: Timer | undefined;
  /** Services to reconcile in the next pass; every service (and orphaned tasks) when set. */
  private dirty = new Set<string>();
  private everyService = true;
  /** When each service wants to be looked at again (restart windows, update delays, image retries). */
  private readonly wakes = new Map<string, number>();
  private wakeAtMs: number | undefined;
  private readonly batchActions: number;

  constructor(
    private readonly ctx: LoopContext,
    options: OrchestratorOptions,
  ) {
    this.images = new ImageDigests(options.resolveImage, ctx.clock);
    this.batchActions = options.batchActions ?? ORCHESTRATOR_BATCH_ACTIONS;
    this.trigger = new ReconcileTrigger(() => this.pass(), {
      clock: ctx.clock,
      onError: (err) => {
        this.everyService = true;
        ctx.logger.warn({ err: String(err) }, "orchestrator pass failed; retrying");
      },
    });
    ctx.watch({ tables: ["services", "tasks", "nodes"] }, (event) => {
      if (event.kind === "reset" || event.table === "nodes") {
        // A node change can concern every service (DOWN, drained, global eligibility).
        this.everyService = true;
      } else if (event.table === "services") {
        if (event.kind === "remove") this.images.forget((event.object as Service).id);
        this.markDirty((event.object as Service).id);
      } else if (event.table === "tasks") {
        const task = event.object as Task;
        if (event.kind === "remove") this.runningSince.delete(task.id);
        else if (task.status?.state === TaskState.TASK_STATE_RUNNING && !this.runningSince.has(task.id)) this.runningSince.set(task.id, ctx.clock.nowMs());
        if (!concernsOrchestrator(event.kind, event.oldObject as Task | undefined, task)) return;
        this.markDirty(task.serviceId);
      } else {
        return;
      }
      this.trigger.request();
    });
    this.trigger.request();
  }

  private markDirty(serviceId: string): void {
    if (this.dirty.size >= MAX_DIRTY_SERVICES) this.everyService = true;
    else this.dirty.add(serviceId);
  }

  get busy(): boolean {
    return this.trigger.busy;
  }

  idle(): Promise<void> {
    return this.trigger.idle();
  }

  stop(): void {
    this.trigger.close();
    this.wakeTimer?.cancel();
  }

  private async pass(): Promise<void> {
    const nodes = new Map(this.ctx.store.listNodes().map((n) => [n.id, n] as const));
    let ids: string[];
    if (this.everyService) {
      this.everyService = false;
      this.dirty = new Set();
      const services = this.ctx.store.listServices().map((s) => s.id);
      const known = new Set(services);
      const orphans = new Set<string>();
      for (const task of this.ctx.store.listTasks()) if (!known.has(task.serviceId)) orphans.add(task.serviceId);
      ids = [...orphans, ...services];
    } else {
      ids = [...this.dirty].sort();
      this.dirty = new Set();
    }
    // Services are independent (disjoint tasks), so their proposals go through raft side by side and
    // share its disk writes; one service's own batches stay in order (each plans on the last's result).
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ids.length && !this.ctx.stopped) {
        const serviceId = ids[next++]!;
        let at: number | undefined;
        try {
          at = await this.reconcile(serviceId, nodes);
        } catch (err) {
          if (isShoalError(err, "NOT_LEADER") || this.ctx.stopped) throw err;
          // One service's trouble must not hold up the others; it is tried again shortly.
          this.ctx.logger.warn({ serviceId, err: String(err) }, "cannot reconcile a service");
          at = this.ctx.clock.nowMs() + 1000;
        }
        if (at === undefined) this.wakes.delete(serviceId);
        else this.wakes.set(serviceId, at);
      }
    };
    await Promise.all(Array.from({ length: Math.min(SERVICES_IN_FLIGHT, ids.length) }, worker));
    this.scheduleWake();
  }

  private scheduleWake(): void {
    let atMs: number | undefined;
    for (const at of this.wakes.values()) if (atMs === undefined || at < atMs) atMs = at;
    if (atMs === undefined || (this.wakeAtMs !== undefined && this.wakeAtMs <= atMs && this.wakeAtMs > this.ctx.clock.nowMs())) return;
    this.wakeTimer?.cancel();
    this.wakeAtMs = atMs;
    this.wakeTimer = this.ctx.timer(() => {
      this.wakeAtMs = undefined;
      const now = this.ctx.clock.nowMs();
      for (const [serviceId, at] of this.wakes) if (at <= now) this.markDirty(serviceId);
      this.trigger.request();
    }, Math.max(0, atMs - this.ctx.clock.nowMs()));
  }

  /** Commits the service's plan, a batch per proposal; returns when to look again. */
  private async reconcile(serviceId: string, nodes: ReadonlyMap<string, Node>): Promise<number | undefined> {
    let wake: number | undefined;
    for (let round = 0; round < MAX_ROUNDS_PER_SERVICE && !this.ctx.stopped; round++) {
      let needsImage: Service | undefined;
      let more = false;
      let usedFailure = false;
      await this.ctx.update((tx) => {
        // The same state the transaction starts from: prepare runs synchronously on it.
        const service = this.ctx.store.getService(serviceId);
        const tasks = this.ctx.store.listTasks({ serviceId });
        const plan = this.plan(service, tasks, nodes);
        wake = plan.wakeAtMs;
        if (plan.needsImage && service !== undefined) {
          needsImage = service;
          return false;
        }
        usedFailure = service !== undefined && this.images.state(service, tasks).kind === "failed";
        const result = this.write(tx, plan);
        more = result.more;
        return result.wrote;
      });
      if (usedFailure) this.images.failureUsed(serviceId);
      if (needsImage !== undefined) {
        await this.images.resolveFor(needsImage);
        continue;
      }
      if (!more) break;
    }
    return wake;
  }

  private plan(service: Service | undefined, tasks: Task[], nodes: ReadonlyMap<string, Node>): ServicePlan {
    if (service === undefined || service.pendingDelete) return planRemoval(service, tasks, nodes);
    const nowMs = this.ctx.clock.nowMs();
    return reconcileService({
      service,
      tasks,
      nodes,
      nowMs,
      image: this.images.state(service, tasks),
      runningSince: (task) => {
        let at = this.runningSince.get(task.id);
        if (at === undefined) this.runningSince.set(task.id, (at = nowMs));
        return at;
      },
      seenRunningAt: (task) => this.runningSince.get(task.id),
      newId: () => this.ctx.newId(),
    });
  }

  private write(tx: StoreTransaction, plan: ServicePlan): { wrote: boolean; more: boolean } {
    let actions = 0;
    let wrote = false;
    if (plan.service !== undefined) {
      tx.updateService(plan.service);
      actions++;
      wrote = true;
    }
    let bytes = 0;
    let i = 0;
    for (; i < plan.units.length; i++) {
      const unit = plan.units[i]!;
      const size = unitBytes(unit);
      if (actions > 0 && (actions + unitSize(unit) > this.batchActions || bytes + size > BATCH_BYTES)) break;
      // A unit too big for any proposal (tasks of a huge spec): the stop goes first, alone; the next
      // round sees the slot without a live task and makes the replacement in a proposal of its own.
      const split = size > BATCH_BYTES && unit.creates.length > 0 && unit.updates.length + unit.removes.length > 0;
      for (const t of unit.updates) tx.updateTask(t);
      if (!split) for (const t of unit.creates) tx.createTask(t);
      for (const t of unit.removes) tx.removeTask(t.id, { version: t.meta?.version });
      if (unit.removeServiceId !== undefined) {
        tx.removeService(unit.removeServiceId);
        this.images.forget(unit.removeServiceId);
      }
      actions += unitSize(unit);
      bytes += size;
      wrote = true;
      if (split) {
        i++;
        break;
      }
    }
    return { wrote, more: i < plan.units.length };
  }
}

/**
 * Whether a task change can change the orchestrator's plan: tasks made or deleted, a desired state
 * that moved, a task that ended or began RUNNING (update progress). Placement steps (ASSIGNED …
 * STARTING) cannot, so the scheduler's and agents' progress reports cost no pass.
 */
function concernsOrchestrator(kind: "create" | "update" | "remove", before: Task | undefined, after: Task): boolean {
  if (kind !== "update" || before === undefined) return true;
  const was = before.status?.state ?? TaskState.TASK_STATE_NEW;
  const now = after.status?.state ?? TaskState.TASK_STATE_NEW;
  return (
    before.desiredState !== after.desiredState ||
    before.restartDeclined !== after.restartDeclined ||
    isTerminalState(was) !== isTerminalState(now) ||
    (now === TaskState.TASK_STATE_RUNNING) !== (was === TaskState.TASK_STATE_RUNNING)
  );
}
