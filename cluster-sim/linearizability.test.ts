// The linearizability checker on small histories whose verdict is known by hand, including
// unknown outcomes and compare-and-set, plus a brute-force cross-check on random histories.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SeededRandom } from "../src/base/random.js";
import { checkLinearizable, checkRegisterHistory, stepRegister, type HistoryOp, type KvInput, type KvOutput, type KvValue } from "./linearizability.js";

let nextId = 1;
function op(clientId: number, input: KvInput, output: KvOutput | undefined, invokeMs: number, returnMs: number): HistoryOp {
  return { id: nextId++, clientId, input, ...(output ? { output } : {}), invokeMs, returnMs };
}
const put = (key: string, value: string): KvInput => ({ kind: "put", key, value });
const get = (key: string): KvInput => ({ kind: "get", key });
const cas = (key: string, expected: KvValue, value: string): KvInput => ({ kind: "cas", key, expected, value });
const okPut: KvOutput = { kind: "put" };
const read = (value: KvValue): KvOutput => ({ kind: "get", value });
const casOut = (ok: boolean): KvOutput => ({ kind: "cas", ok });

test("sequential put then get of the written value is linearizable", () => {
  const h = [op(1, put("x", "a"), okPut, 0, 10), op(1, get("x"), read("a"), 20, 30)];
  assert.equal(checkLinearizable(h).ok, true);
});

test("a read of a stale value after a completed write is not linearizable", () => {
  const h = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(1, put("x", "b"), okPut, 20, 30),
    op(2, get("x"), read("a"), 40, 50),
  ];
  const report = checkLinearizable(h);
  assert.equal(report.ok, false);
  assert.equal(report.counterexample?.key, "x");
});

test("a read concurrent with a write may see either value", () => {
  for (const seen of ["a", "b"]) {
    const h: HistoryOp[] = [
      op(1, put("x", "a"), okPut, 0, 10),
      op(1, put("x", "b"), okPut, 20, 60),
      op(2, get("x"), read(seen), 30, 50),
    ];
    assert.equal(checkLinearizable(h).ok, true, `reading ${seen}`);
  }
});

test("a read of a never-written value is not linearizable; absent reads as null", () => {
  assert.equal(checkLinearizable([op(1, get("x"), read("zzz"), 0, 1)]).ok, false);
  assert.equal(checkLinearizable([op(1, get("x"), read(null), 0, 1)]).ok, true);
  assert.equal(checkLinearizable([op(1, put("x", "a"), okPut, 0, 1), op(2, get("x"), read(null), 5, 6)]).ok, false);
});

test("two readers that disagree on the order of two concurrent writes are not linearizable", () => {
  // Writes a and b overlap each other, but reader 3 sees b then a while reader 4 sees a then b,
  // all reads ordered after the writes started and strictly sequenced.
  const h = [
    op(1, put("x", "a"), okPut, 0, 100),
    op(2, put("x", "b"), okPut, 0, 100),
    op(3, get("x"), read("b"), 10, 20),
    op(3, get("x"), read("a"), 30, 40),
    op(4, get("x"), read("a"), 50, 60),
    op(4, get("x"), read("b"), 70, 80),
  ];
  assert.equal(checkLinearizable(h).ok, false);
});

test("a write with an unknown outcome may or may not have happened", () => {
  const happened = [op(1, put("x", "a"), undefined, 0, Infinity), op(2, get("x"), read("a"), 50, 60)];
  const notHappened = [op(1, put("x", "a"), undefined, 0, Infinity), op(2, get("x"), read(null), 50, 60)];
  assert.equal(checkLinearizable(happened).ok, true);
  assert.equal(checkLinearizable(notHappened).ok, true);
});

test("an unknown write cannot take effect before it was invoked", () => {
  const h = [op(2, get("x"), read("a"), 0, 10), op(1, put("x", "a"), undefined, 20, Infinity)];
  assert.equal(checkLinearizable(h).ok, false);
});

test("an unknown write takes effect at one point: it cannot flicker", () => {
  // Seen, then unseen, then seen again with no other writer: impossible.
  const h = [
    op(9, put("x", "a"), okPut, 0, 1),
    op(1, put("x", "b"), undefined, 5, Infinity),
    op(2, get("x"), read("b"), 10, 20),
    op(2, get("x"), read("a"), 30, 40),
  ];
  assert.equal(checkLinearizable(h).ok, false);
});

test("compare-and-set succeeds only on the expected value", () => {
  const good = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "a", "b"), casOut(true), 20, 30),
    op(3, cas("x", "a", "c"), casOut(false), 40, 50),
    op(1, get("x"), read("b"), 60, 70),
  ];
  assert.equal(checkLinearizable(good).ok, true);
  const bad = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "a", "b"), casOut(true), 20, 30),
    op(3, cas("x", "a", "c"), casOut(true), 40, 50),
  ];
  assert.equal(checkLinearizable(bad).ok, false);
  const failedWithoutReason = [op(1, put("x", "a"), okPut, 0, 10), op(2, cas("x", "a", "b"), casOut(false), 20, 30)];
  assert.equal(checkLinearizable(failedWithoutReason).ok, false);
});

test("two concurrent compare-and-sets on the same value: exactly one may win", () => {
  const oneWins = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "a", "b"), casOut(true), 20, 50),
    op(3, cas("x", "a", "c"), casOut(false), 20, 50),
  ];
  assert.equal(checkLinearizable(oneWins).ok, true);
  const bothWin = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "a", "b"), casOut(true), 20, 50),
    op(3, cas("x", "a", "c"), casOut(true), 20, 50),
  ];
  assert.equal(checkLinearizable(bothWin).ok, false);
});

test("an unknown compare-and-set is resolved by what later reads saw", () => {
  const h = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "a", "b"), undefined, 20, Infinity),
    op(3, get("x"), read("b"), 40, 50),
    op(3, cas("x", "b", "c"), casOut(true), 60, 70),
    op(3, get("x"), read("c"), 80, 90),
  ];
  assert.equal(checkLinearizable(h).ok, true);
  const impossible = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(2, cas("x", "zz", "b"), undefined, 20, Infinity),
    op(3, get("x"), read("b"), 40, 50),
  ];
  assert.equal(checkLinearizable(impossible).ok, false);
});

test("keys are checked independently and the failing key is named", () => {
  const h = [
    op(1, put("x", "a"), okPut, 0, 10),
    op(1, put("y", "a"), okPut, 0, 10),
    op(2, get("y"), read("a"), 20, 30),
    op(2, get("x"), read(null), 20, 30),
  ];
  const report = checkLinearizable(h);
  assert.equal(report.ok, false);
  assert.equal(report.counterexample?.key, "x");
  assert.deepEqual(
    report.keys.map((k) => [k.key, k.verdict]),
    [
      ["x", "not-linearizable"],
      ["y", "linearizable"],
    ],
  );
});

test("operations that touch in time are treated as concurrent", () => {
  // put returns at 10 and get is invoked at 10: the get may be ordered first.
  const h = [op(1, put("x", "a"), okPut, 0, 10), op(2, get("x"), read(null), 10, 20)];
  assert.equal(checkLinearizable(h).ok, true);
});

test("the step budget reports exhaustion instead of a verdict", () => {
  const h: HistoryOp[] = [];
  for (let i = 0; i < 40; i++) h.push(op(i, put("x", `v${i}`), okPut, 0, 1000));
  h.push(op(99, get("x"), read("nope"), 0, 1000));
  assert.equal(checkRegisterHistory(h, 50), "exhausted");
});

/** Brute force over all orders consistent with real time; only for tiny histories. */
function bruteForce(ops: HistoryOp[]): boolean {
  const n = ops.length;
  const used = new Array<boolean>(n).fill(false);
  const search = (state: KvValue, depth: number): boolean => {
    if (depth === n) return true;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      // i may go next only if no unused op returned before i was invoked.
      if (ops.some((o, j) => !used[j] && j !== i && o.returnMs < ops[i]!.invokeMs)) continue;
      const r = stepRegister(state, ops[i]!.input, ops[i]!.output);
      if (r === undefined) continue;
      used[i] = true;
      if (search(r.state, depth + 1)) return true;
      used[i] = false;
    }
    return false;
  };
  return search(null, 0);
}

test("agrees with brute force on 400 random small histories", () => {
  const random = new SeededRandom(7);
  let linearizable = 0;
  for (let round = 0; round < 400; round++) {
    const ops: HistoryOp[] = [];
    const count = random.int(1, 7);
    const values = ["a", "b", "c"];
    for (let i = 0; i < count; i++) {
      const invokeMs = random.int(0, 50);
      const unknown = random.float() < 0.15;
      const returnMs = unknown ? Infinity : invokeMs + random.int(1, 30);
      const pick = random.int(0, 3);
      const v = values[random.int(0, 3)]!;
      let input: KvInput;
      let output: KvOutput | undefined;
      if (pick === 0) {
        input = put("k", v);
        output = okPut;
      } else if (pick === 1) {
        input = get("k");
        output = read(random.float() < 0.25 ? null : values[random.int(0, 3)]!);
      } else {
        input = cas("k", random.float() < 0.2 ? null : values[random.int(0, 3)]!, v);
        output = casOut(random.float() < 0.5);
      }
      if (unknown && input.kind === "get") continue;
      ops.push(op(i, input, unknown ? undefined : output, invokeMs, returnMs));
    }
    const expected = bruteForce(ops);
    if (expected) linearizable++;
    assert.equal(checkRegisterHistory(ops) === "linearizable", expected, JSON.stringify(ops));
  }
  // The generator must produce both verdicts or the comparison proves little.
  assert.ok(linearizable > 40 && linearizable < 360, `linearizable=${linearizable}`);
});
