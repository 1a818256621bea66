// The leader's prefetch orders as the dispatcher pushes them (DESIGN.md §8): per node, the order of
// each job it takes part in, with the zone it was planned for. Jobs live in the leader's memory
// (they are rebuilt from the tasks after a failover), so this board is not in the store: the
// prefetch loop publishes a job's orders after every plan or grant renewal, the dispatcher reads
// them when it syncs a node and re-checks the zone against the node's certificate.
import { ShoalError } from "../../base/errors.js";
import type { PrefetchOrder, ReportPrefetchRequest } from "../../proto/shoal/v1/dispatcher.js";

export interface BoardOrder {
  nodeId: string;
  /** The zone the node was planned in: the dispatcher sends the order only to a node of this zone. */
  zone: string;
  order: PrefetchOrder;
}

export interface BoardEntry extends BoardOrder {
  /** Changes whenever the job's order for this node is published again (the dispatcher's fingerprint). */
  version: number;
}

/** A node's report on its part in a job, as the dispatcher accepted it. */
export interface AcceptedReport {
  nodeId: string;
  zone: string;
  report: ReportPrefetchRequest;
}

/** What the dispatcher needs of the board. */
export interface PrefetchOrderSource {
  ordersFor(nodeId: string): readonly BoardEntry[];
  /** The node's entry for the job, if it has one. */
  entry(nodeId: string, jobId: string): BoardEntry | undefined;
  /** Hands an accepted report to the job's owner (the prefetch loop). */
  report(accepted: AcceptedReport): void;
  /** Called with the nodes whose orders changed; returns the unsubscribe function. */
  onChange(listener: (nodeIds: readonly string[]) => void): () => void;
}

export class PrefetchOrderBoard implements PrefetchOrderSource {
  /** nodeId → jobId → entry. */
  private readonly byNode = new Map<string, Map<string, BoardEntry>>();
  /** jobId → the nodes it has an order for. */
  private readonly byJob = new Map<string, Set<string>>();
  private readonly listeners = new Set<(nodeIds: readonly string[]) => void>();
  private readonly reportListeners = new Set<(accepted: AcceptedReport) => void>();
  private version = 0;

  /** Replaces every order of the job: a node not in `orders` loses the job's order. */
  publish(jobId: string, orders: readonly BoardOrder[]): void {
    const nodes = new Set<string>();
    for (const o of orders) {
      if (o.order.jobId !== jobId) throw new ShoalError("INVALID_ARGUMENT", `an order of job ${o.order.jobId} was published for job ${jobId}`);
      if (nodes.has(o.nodeId)) throw new ShoalError("INVALID_ARGUMENT", `job ${jobId} has two orders for node ${o.nodeId}`);
      nodes.add(o.nodeId);
    }
    const touched = new Set<string>(this.byJob.get(jobId) ?? []);
    for (const nodeId of touched) if (!nodes.has(nodeId)) this.byNode.get(nodeId)?.delete(jobId);
    for (const o of orders) {
      const jobs = this.byNode.get(o.nodeId) ?? this.byNode.set(o.nodeId, new Map()).get(o.nodeId)!;
      jobs.set(jobId, { nodeId: o.nodeId, zone: o.zone, order: o.order, version: ++this.version });
      touched.add(o.nodeId);
    }
    this.prune(touched);
    if (nodes.size > 0) this.byJob.set(jobId, nodes);
    else this.byJob.delete(jobId);
    this.changed(touched);
  }

  /** Ends the job everywhere: its nodes are told to drop it. */
  withdraw(jobId: string): void {
    this.publish(jobId, []);
  }

  /** Withdraws every job (this manager is no longer leader). */
  clear(): void {
    const nodes = [...this.byNode.keys()];
    this.byNode.clear();
    this.byJob.clear();
    this.changed(nodes);
  }

  jobs(): string[] {
    return [...this.byJob.keys()];
  }

  ordersFor(nodeId: string): readonly BoardEntry[] {
    return [...(this.byNode.get(nodeId)?.values() ?? [])];
  }

  entry(nodeId: string, jobId: string): BoardEntry | undefined {
    return this.byNode.get(nodeId)?.get(jobId);
  }

  report(accepted: AcceptedReport): void {
    for (const listener of [...this.reportListeners]) listener(accepted);
  }

  /** The prefetch loop subscribes here; returns the unsubscribe function. */
  onReport(listener: (accepted: AcceptedReport) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  onChange(listener: (nodeIds: readonly string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private prune(nodeIds: Iterable<string>): void {
    for (const nodeId of nodeIds) if (this.byNode.get(nodeId)?.size === 0) this.byNode.delete(nodeId);
  }

  private changed(nodeIds: Iterable<string>): void {
    const list = [...nodeIds];
    if (list.length === 0) return;
    for (const listener of [...this.listeners]) listener(list);
  }
}
