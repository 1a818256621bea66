// The prefetch planner: for one job (one blob to a set of target nodes), which nodes pull from the
// registry (seeds) and which peers every other node fetches pieces from. Pure: no I/O, no clock;
// the leader's loop and cluster-sim call it with the same inputs and get the same plan.
//
// The rules (DESIGN.md §3 rule 9, §8): nothing crosses a zone, so each zone is planned on its own
// and gets its own seeds; a revoked, excluded or down node is neither a seed nor anyone's
// candidate; replans keep what still holds (seeds, candidate lists), so a node that lost one peer
// does not have to start over with a new set.
//
// Candidate lists form a random graph of out-degree K over the zone, chosen with "two random
// choices" by in-degree plus load, so every node (seeds included) serves about K others: the seed
// is not asked by the whole zone at once, and the data spreads as a tree of fan-out about K while
// every node's upload stays in use. A final pass makes sure every node is reachable from a seed.
import { ShoalError } from "../../base/errors.js";
import type { Random } from "../../base/random.js";

export interface PlanNode {
  nodeId: string;
  zone: string;
  addr: string;
  revoked: boolean;
  down: boolean;
  /** Excluded from this job (served a bad piece). */
  excluded: boolean;
  /** How busy the node is (transfers it serves, in the same units as a candidate slot). */
  load: number;
}

export interface PlanInput {
  jobId: string;
  targets: readonly PlanNode[];
  previous?: PrefetchPlan;
  /** Seeds wanted in a zone of this many eligible targets (default defaultSeedsFor). */
  seedsFor?: (zoneTargets: number) => number;
  candidatesPerNode?: number;
  random: Random;
}

export interface NodePlan {
  nodeId: string;
  zone: string;
  role: "seed" | "peer";
  /** Node IDs of its zone, best first; empty for a seed (it pulls from the registry). */
  candidates: string[];
}

export interface PrefetchPlan {
  jobId: string;
  nodes: NodePlan[];
  zones: string[];
}

export const DEFAULT_CANDIDATES_PER_NODE = 8;
export const MAX_DEFAULT_SEEDS = 4;

/** One seed, one more per 32 targets, at most MAX_DEFAULT_SEEDS: each seed costs one copy of registry egress. */
export function defaultSeedsFor(zoneTargets: number): number {
  return Math.min(MAX_DEFAULT_SEEDS, 1 + Math.floor(zoneTargets / 32));
}

/** Whether a node may take part in the job now. A down node keeps its target slot and is planned again once up. */
export function isEligible(node: PlanNode): boolean {
  return !node.revoked && !node.excluded && !node.down;
}

export function planPrefetch(input: PlanInput): PrefetchPlan {
  const k = input.candidatesPerNode ?? DEFAULT_CANDIDATES_PER_NODE;
  if (!Number.isInteger(k) || k < 1) throw new ShoalError("INVALID_ARGUMENT", `candidatesPerNode must be a positive integer, got ${k}`);
  if (input.previous !== undefined && input.previous.jobId !== input.jobId) {
    throw new ShoalError("INVALID_ARGUMENT", `the previous plan is of job ${input.previous.jobId}, not ${input.jobId}`);
  }
  const seen = new Set<string>();
  for (const t of input.targets) {
    if (seen.has(t.nodeId)) throw new ShoalError("INVALID_ARGUMENT", `node ${t.nodeId} is a target twice`);
    seen.add(t.nodeId);
  }

  const byZone = new Map<string, PlanNode[]>();
  for (const t of input.targets) if (isEligible(t)) (byZone.get(t.zone) ?? byZone.set(t.zone, []).get(t.zone)!).push(t);
  const zones = [...byZone.keys()].sort();
  const previous = new Map((input.previous?.nodes ?? []).map((n) => [n.nodeId, n]));
  const seedsFor = input.seedsFor ?? defaultSeedsFor;

  const planned = new Map<string, NodePlan>();
  for (const zone of zones) {
    const members = byZone.get(zone)!;
    const wanted = Math.max(1, Math.min(members.length, Math.floor(seedsFor(members.length))));
    for (const plan of planZone(zone, members, wanted, k, input.previous, previous, input.random)) planned.set(plan.nodeId, plan);
  }
  // In the targets' order, so that a plan reads (and diffs) the way the job was given.
  const nodes = input.targets.flatMap((t) => planned.get(t.nodeId) ?? []);
  return { jobId: input.jobId, nodes, zones };
}

function planZone(zone: string, members: PlanNode[], wanted: number, k: number, previousPlan: PrefetchPlan | undefined, previous: ReadonlyMap<string, NodePlan>, random: Random): NodePlan[] {
  const index = new Map(members.map((m, i) => [m.nodeId, i]));
  const isSeed = new Array<boolean>(members.length).fill(false);
  let seeds = 0;
  // Previous seeds first, in the previous plan's order: a seed is partway through its registry pull.
  for (const p of previousPlan?.nodes ?? []) {
    const i = index.get(p.nodeId);
    if (seeds < wanted && i !== undefined && p.role === "seed" && p.zone === zone) {
      isSeed[i] = true;
      seeds++;
    }
  }
  if (seeds < wanted) {
    const order = members.map((m, i) => ({ i, load: m.load, key: random.float() })).filter((x) => !isSeed[x.i]);
    order.sort((a, b) => a.load - b.load || a.key - b.key);
    for (const { i } of order.slice(0, wanted - seeds)) isSeed[i] = true;
  }

  const graph = new CandidateGraph(members, k, random);
  const peers = shuffled(
    members.map((_, i) => i).filter((i) => !isSeed[i]),
    random,
  );
  for (const i of peers) {
    const kept = previous.get(members[i]!.nodeId)?.candidates ?? [];
    for (const id of kept) {
      const j = index.get(id);
      if (j !== undefined && j !== i && graph.size(i) < k) graph.add(i, j);
    }
    graph.fill(i);
  }
  graph.connectFrom(members.map((_, i) => i).filter((i) => isSeed[i]), peers);

  return members.map((m, i) => ({
    nodeId: m.nodeId,
    zone,
    role: isSeed[i] ? "seed" : "peer",
    candidates: isSeed[i] ? [] : graph.ranked(i).map((j) => members[j]!.nodeId),
  }));
}

function shuffled<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(0, i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** The candidate lists of one zone, by member index, with each member's in-degree (how many list it). */
class CandidateGraph {
  private readonly lists: number[][];
  private readonly inDegree: number[];

  constructor(
    private readonly members: readonly PlanNode[],
    private readonly k: number,
    private readonly random: Random,
  ) {
    this.lists = members.map(() => []);
    this.inDegree = members.map(() => 0);
  }

  size(i: number): number {
    return this.lists[i]!.length;
  }

  add(i: number, j: number): void {
    if (this.lists[i]!.includes(j)) return;
    this.lists[i]!.push(j);
    this.inDegree[j]!++;
  }

  /** How much a node is asked of already: lists it is on plus its load. */
  private score(j: number): number {
    return this.inDegree[j]! + this.members[j]!.load;
  }

  /** Tops i's list up to k (or to everyone else in a small zone). */
  fill(i: number): void {
    const n = this.members.length;
    const want = Math.min(this.k, n - 1);
    const list = this.lists[i]!;
    if (list.length >= want) return;
    if (n - 1 <= 2 * this.k) {
      // A small zone: rank everyone left by score, ties at random.
      const rest = [];
      for (let j = 0; j < n; j++) if (j !== i && !list.includes(j)) rest.push({ j, score: this.score(j), key: this.random.float() });
      rest.sort((a, b) => a.score - b.score || a.key - b.key);
      for (const { j } of rest.slice(0, want - list.length)) this.add(i, j);
      return;
    }
    // Two random choices, the less asked one wins: near-even in-degree at O(1) per slot. At most
    // 2k of the zone's n > 2k + 1 members are excluded, so a draw succeeds more than half the time.
    while (list.length < want) {
      const a = this.draw(i);
      const b = this.draw(i);
      const pick = a === b ? a : this.score(a) < this.score(b) ? a : this.score(b) < this.score(a) ? b : this.random.int(0, 2) === 0 ? a : b;
      this.add(i, pick);
    }
  }

  private draw(i: number): number {
    for (;;) {
      const j = this.random.int(0, this.members.length);
      if (j !== i && !this.lists[i]!.includes(j)) return j;
    }
  }

  /**
   * Makes every peer reachable from a seed along "j is on i's list" edges (data flows j -> i): a
   * peer that no seed reaches gets a reachable node on its list, in place of its last entry when
   * full (an unreachable peer's entries are unreachable too, so no other path is cut).
   */
  connectFrom(seeds: number[], peers: number[]): void {
    const n = this.members.length;
    const servesTo: number[][] = this.members.map(() => []);
    for (let i = 0; i < n; i++) for (const j of this.lists[i]!) servesTo[j]!.push(i);
    const reached = new Array<boolean>(n).fill(false);
    const reachedList: number[] = [];
    const spread = (start: number): void => {
      const stack = [start];
      reached[start] = true;
      while (stack.length > 0) {
        const j = stack.pop()!;
        reachedList.push(j);
        for (const i of servesTo[j]!) {
          if (!reached[i]) {
            reached[i] = true;
            stack.push(i);
          }
        }
      }
    };
    for (const s of seeds) if (!reached[s]) spread(s);
    for (const i of peers) {
      if (reached[i]) continue;
      const a = reachedList[this.random.int(0, reachedList.length)]!;
      const b = reachedList[this.random.int(0, reachedList.length)]!;
      const j = this.score(a) <= this.score(b) ? a : b;
      const list = this.lists[i]!;
      if (list.length >= this.k) this.inDegree[list.pop()!]!--;
      this.add(i, j);
      servesTo[j]!.push(i);
      spread(i);
    }
  }

  /** i's list, least loaded first, then in the order chosen. */
  ranked(i: number): number[] {
    return this.lists[i]!.map((j, pos) => ({ j, pos })).sort((a, b) => this.members[a.j]!.load - this.members[b.j]!.load || a.pos - b.pos).map((x) => x.j);
  }
}

/**
 * Where a seed starts its registry pull: seed k of a zone's m seeds (in the plan's order) at piece
 * floor(k·pieceCount/m), then in order, wrapping round. Seeds that all pulled from piece 0 would
 * bring each new piece into the zone m times at once and nothing else; staggered, the zone gets
 * m different pieces at a time, and its peers have more to exchange from the start (in the
 * bandwidth simulation this took p50 at 1,000 nodes from 1.24 to about 1.1 × T_pipe). Computed from
 * the plan alone, so every seed derives its own without another field on the wire; a seed keeps
 * the start it began with when a replan changes the seed set.
 */
export function originStartPiece(plan: PrefetchPlan, nodeId: string, pieceCount: number): number {
  const me = plan.nodes.find((n) => n.nodeId === nodeId);
  if (me === undefined || me.role !== "seed") return 0;
  const seeds = plan.nodes.filter((n) => n.zone === me.zone && n.role === "seed");
  return Math.floor((seeds.indexOf(me) * pieceCount) / seeds.length);
}
