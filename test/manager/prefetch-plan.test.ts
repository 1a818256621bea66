import assert from "node:assert/strict";
import { test } from "node:test";
import { isShoalError } from "../../src/base/errors.js";
import { SeededRandom, type Random } from "../../src/base/random.js";
import { defaultSeedsFor, isEligible, planPrefetch, type PlanInput, type PlanNode, type PrefetchPlan } from "../../src/manager/prefetch/plan.js";

function node(id: string, zone: string, over: Partial<PlanNode> = {}): PlanNode {
  return { nodeId: id, zone, addr: `10.0.0.1:${id.length}`, revoked: false, down: false, excluded: false, load: 0, ...over };
}

function zoneOf(plan: PrefetchPlan): Map<string, string> {
  return new Map(plan.nodes.map((n) => [n.nodeId, n.zone]));
}

/** Every peer reachable from a seed of its zone, following "j is on i's list" (data flows j -> i). */
function reachableFromSeeds(plan: PrefetchPlan): Set<string> {
  const servesTo = new Map<string, string[]>();
  for (const n of plan.nodes) for (const c of n.candidates) (servesTo.get(c) ?? servesTo.set(c, []).get(c)!).push(n.nodeId);
  const reached = new Set(plan.nodes.filter((n) => n.role === "seed").map((n) => n.nodeId));
  const stack = [...reached];
  while (stack.length > 0) for (const i of servesTo.get(stack.pop()!) ?? []) if (!reached.has(i)) (reached.add(i), stack.push(i));
  return reached;
}

function randomTargets(random: Random, count: number): PlanNode[] {
  const zones = ["a", "b", "c", "d"].slice(0, random.int(1, 5));
  return Array.from({ length: count }, (_, i) =>
    node(`n${i}`, zones[random.int(0, zones.length)]!, {
      revoked: random.float() < 0.05,
      down: random.float() < 0.05,
      excluded: random.float() < 0.05,
      load: random.int(0, 4),
    }),
  );
}

/** The invariants every plan keeps, whatever its input. */
function checkPlan(input: PlanInput, plan: PrefetchPlan): void {
  const k = input.candidatesPerNode ?? 8;
  const target = new Map(input.targets.map((t) => [t.nodeId, t]));
  const zones = zoneOf(plan);
  assert.deepEqual(
    plan.nodes.map((n) => n.nodeId),
    input.targets.filter(isEligible).map((t) => t.nodeId),
    "exactly the eligible targets are planned, in order",
  );
  assert.deepEqual(plan.zones, [...new Set(input.targets.filter(isEligible).map((t) => t.zone))].sort());
  for (const n of plan.nodes) {
    assert.equal(n.zone, target.get(n.nodeId)!.zone);
    if (n.role === "seed") assert.deepEqual(n.candidates, []);
    assert.ok(n.candidates.length <= k);
    assert.equal(new Set(n.candidates).size, n.candidates.length, "a candidate twice");
    const zoneSize = plan.nodes.filter((m) => m.zone === n.zone).length;
    if (n.role === "peer") assert.equal(n.candidates.length, Math.min(k, zoneSize - 1), `${n.nodeId} has a short list`);
    for (const c of n.candidates) {
      assert.notEqual(c, n.nodeId);
      assert.equal(zones.get(c), n.zone, `${n.nodeId} of zone ${n.zone} lists ${c} of another zone or no plan`);
      assert.ok(isEligible(target.get(c)!));
    }
  }
  for (const zone of plan.zones) {
    const seeds = plan.nodes.filter((n) => n.zone === zone && n.role === "seed").length;
    const size = plan.nodes.filter((n) => n.zone === zone).length;
    assert.ok(seeds >= 1, `zone ${zone} has no seed`);
    assert.ok(seeds <= Math.max(1, Math.min(size, (input.seedsFor ?? defaultSeedsFor)(size))));
  }
  assert.equal(reachableFromSeeds(plan).size, plan.nodes.length, "a node no seed reaches");
}

test("over random inputs and replans: zones never mix, only eligible nodes appear, every node is reachable from a seed of its zone", () => {
  const random = new SeededRandom(2024);
  for (let round = 0; round < 300; round++) {
    const targets = randomTargets(random, random.int(1, 120));
    const k = random.int(1, 10);
    const first: PlanInput = { jobId: "j", targets, candidatesPerNode: k, random };
    const plan = planPrefetch(first);
    checkPlan(first, plan);
    // Replan after some nodes change state: the same invariants hold against the new input.
    const changed = targets.map((t) => (random.float() < 0.1 ? { ...t, revoked: true } : random.float() < 0.1 ? { ...t, down: !t.down } : t));
    const second: PlanInput = { jobId: "j", targets: changed, previous: plan, candidatesPerNode: k, random };
    checkPlan(second, planPrefetch(second));
  }
});

test("a zone with targets but no other node gets its own seed, and nothing of zone b is listed in zone a", () => {
  const targets = [...Array.from({ length: 10 }, (_, i) => node(`a${i}`, "a")), node("b0", "b"), node("b1", "b")];
  const plan = planPrefetch({ jobId: "j", targets, random: new SeededRandom(1) });
  const b = plan.nodes.filter((n) => n.zone === "b");
  assert.equal(b.filter((n) => n.role === "seed").length, 1);
  assert.deepEqual(b.find((n) => n.role === "peer")!.candidates, [b.find((n) => n.role === "seed")!.nodeId]);
  for (const n of plan.nodes.filter((m) => m.zone === "a")) assert.ok(n.candidates.every((c) => c.startsWith("a")));
});

test("seeds: one for a small zone, more for a big one (capped), seedsFor overrides, and the least loaded are picked", () => {
  const count = (plan: PrefetchPlan): number => plan.nodes.filter((n) => n.role === "seed").length;
  const zone = (n: number, load = (_: number) => 0): PlanNode[] => Array.from({ length: n }, (_, i) => node(`n${i}`, "a", { load: load(i) }));
  assert.equal(count(planPrefetch({ jobId: "j", targets: zone(20), random: new SeededRandom(1) })), 1);
  assert.equal(count(planPrefetch({ jobId: "j", targets: zone(70), random: new SeededRandom(1) })), 3);
  assert.equal(count(planPrefetch({ jobId: "j", targets: zone(1000), random: new SeededRandom(1) })), 4);
  assert.equal(count(planPrefetch({ jobId: "j", targets: zone(5), seedsFor: () => 99, random: new SeededRandom(1) })), 5);
  assert.equal(count(planPrefetch({ jobId: "j", targets: zone(5), seedsFor: () => 0, random: new SeededRandom(1) })), 1, "never less than one");
  const loaded = planPrefetch({ jobId: "j", targets: zone(40, (i) => (i === 17 || i === 23 ? 0 : 5)), random: new SeededRandom(3) });
  assert.deepEqual(loaded.nodes.filter((n) => n.role === "seed").map((n) => n.nodeId), ["n17", "n23"]);
});

test("replans keep the seeds and the candidates that are still eligible", () => {
  const targets = Array.from({ length: 100 }, (_, i) => node(`n${i}`, "a", { load: i % 3 }));
  const first = planPrefetch({ jobId: "j", targets, random: new SeededRandom(5) });
  const again = planPrefetch({ jobId: "j", targets, previous: first, random: new SeededRandom(6) });
  assert.deepEqual(again, first, "nothing changed, so the plan does not either, whatever the random stream");
  // Loads change (which would pick other seeds from scratch): the seeds stay.
  const reloaded = targets.map((t, i) => ({ ...t, load: (i * 7) % 5 }));
  const third = planPrefetch({ jobId: "j", targets: reloaded, previous: first, random: new SeededRandom(7) });
  assert.deepEqual(seedIds(third), seedIds(first));
});

function seedIds(plan: PrefetchPlan): string[] {
  return plan.nodes.filter((n) => n.role === "seed").map((n) => n.nodeId);
}

test("a revoked node leaves every candidate list and the plan; the lists are topped up from the zone", () => {
  const targets = Array.from({ length: 60 }, (_, i) => node(`n${i}`, "a"));
  const first = planPrefetch({ jobId: "j", targets, random: new SeededRandom(11) });
  const victim = first.nodes.find((n) => n.role === "peer" && first.nodes.filter((m) => m.candidates.includes(n.nodeId)).length > 0)!.nodeId;
  const after = targets.map((t) => (t.nodeId === victim ? { ...t, revoked: true } : t));
  const second = planPrefetch({ jobId: "j", targets: after, previous: first, random: new SeededRandom(12) });
  assert.ok(second.nodes.every((n) => n.nodeId !== victim && !n.candidates.includes(victim)));
  for (const n of second.nodes.filter((m) => m.role === "peer")) {
    assert.equal(n.candidates.length, 8);
    const before = first.nodes.find((m) => m.nodeId === n.nodeId)!.candidates.filter((c) => c !== victim);
    assert.ok(before.every((c) => n.candidates.includes(c)), `${n.nodeId} lost a candidate other than the revoked one`);
  }
  // Excluded (served a bad piece) is treated the same way.
  const excluded = targets.map((t) => (t.nodeId === victim ? { ...t, excluded: true } : t));
  assert.ok(planPrefetch({ jobId: "j", targets: excluded, previous: first, random: new SeededRandom(12) }).nodes.every((n) => n.nodeId !== victim && !n.candidates.includes(victim)));
});

test("a down seed is replaced by another node of its zone; when it is back it is a peer and the new seed stays", () => {
  const targets = Array.from({ length: 20 }, (_, i) => node(`n${i}`, "a"));
  const first = planPrefetch({ jobId: "j", targets, random: new SeededRandom(21) });
  const [seed] = seedIds(first);
  const down = targets.map((t) => (t.nodeId === seed ? { ...t, down: true } : t));
  const second = planPrefetch({ jobId: "j", targets: down, previous: first, random: new SeededRandom(22) });
  const [replacement] = seedIds(second);
  assert.ok(replacement !== undefined && replacement !== seed);
  assert.ok(second.nodes.every((n) => n.nodeId !== seed && !n.candidates.includes(seed!)), "a down node waits: no plan, no one's candidate");
  const third = planPrefetch({ jobId: "j", targets, previous: second, random: new SeededRandom(23) });
  assert.deepEqual(seedIds(third), [replacement]);
  assert.equal(third.nodes.find((n) => n.nodeId === seed)!.role, "peer");
});

test("candidate lists spread the asking: in a big zone no node (the seed included) is on many more lists than K", () => {
  const targets = Array.from({ length: 1000 }, (_, i) => node(`n${i}`, "a"));
  const plan = planPrefetch({ jobId: "j", targets, random: new SeededRandom(31) });
  const inDegree = new Map<string, number>();
  for (const n of plan.nodes) for (const c of n.candidates) inDegree.set(c, (inDegree.get(c) ?? 0) + 1);
  const max = Math.max(...inDegree.values());
  assert.ok(max <= 12, `a node is on ${max} lists`);
  for (const s of seedIds(plan)) assert.ok((inDegree.get(s) ?? 0) >= 1, "a seed nobody asks");
  // Different lists: not everyone asks the same peers.
  assert.ok(new Set(plan.nodes.map((n) => n.candidates.join(","))).size > 990);
});

test("a loaded node is ranked after idle ones and asked by fewer", () => {
  const targets = Array.from({ length: 200 }, (_, i) => node(`n${i}`, "a", { load: i < 20 ? 6 : 0 }));
  const plan = planPrefetch({ jobId: "j", targets, random: new SeededRandom(41) });
  const inDegree = new Map<string, number>();
  for (const n of plan.nodes) for (const c of n.candidates) inDegree.set(c, (inDegree.get(c) ?? 0) + 1);
  const mean = (ids: string[]): number => ids.reduce((s, id) => s + (inDegree.get(id) ?? 0), 0) / ids.length;
  const busy = targets.slice(0, 20).map((t) => t.nodeId);
  const idle = targets.slice(20).map((t) => t.nodeId);
  assert.ok(mean(busy) < mean(idle) / 2, `busy nodes on ${mean(busy)} lists, idle on ${mean(idle)}`);
  for (const n of plan.nodes) {
    const loads = n.candidates.map((c) => targets.find((t) => t.nodeId === c)!.load);
    assert.deepEqual(loads, [...loads].sort((a, b) => a - b), "ranked by load");
  }
});

test("deterministic for a given random seed", () => {
  const targets = randomTargets(new SeededRandom(51), 300);
  const a = planPrefetch({ jobId: "j", targets, random: new SeededRandom(52) });
  const b = planPrefetch({ jobId: "j", targets, random: new SeededRandom(52) });
  const c = planPrefetch({ jobId: "j", targets, random: new SeededRandom(53) });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("bad inputs are refused with INVALID_ARGUMENT", () => {
  const random = new SeededRandom(1);
  const invalid = (e: unknown): boolean => isShoalError(e, "INVALID_ARGUMENT");
  assert.throws(() => planPrefetch({ jobId: "j", targets: [node("x", "a"), node("x", "a")], random }), invalid);
  assert.throws(() => planPrefetch({ jobId: "j", targets: [node("x", "a")], candidatesPerNode: 0, random }), invalid);
  assert.throws(() => planPrefetch({ jobId: "j", targets: [], previous: { jobId: "other", nodes: [], zones: [] }, random }), invalid);
  assert.deepEqual(planPrefetch({ jobId: "j", targets: [node("x", "a", { revoked: true })], random }), { jobId: "j", nodes: [], zones: [] });
});
