// Linearizability checker for the simulator's key-value history: Wing & Gong's backtracking search
// with Porcupine's memoisation of (set of linearized operations, model state), run per key.

/** A key's value; null means the key is absent. */
export type KvValue = string | null;

export type KvInput =
  | { kind: "put"; key: string; value: string }
  | { kind: "get"; key: string }
  | { kind: "cas"; key: string; expected: KvValue; value: string };

export type KvOutput = { kind: "put" } | { kind: "get"; value: KvValue } | { kind: "cas"; ok: boolean };

export interface HistoryOp {
  /** Unique within the history; used to order ties deterministically and in reports. */
  id: number;
  clientId: number;
  input: KvInput;
  /**
   * Absent when the client never learned the outcome (a timeout): the operation may have taken
   * effect at any point after its invocation, or never.
   */
  output?: KvOutput;
  invokeMs: number;
  /** Infinity when the outcome is unknown. */
  returnMs: number;
}

export interface KeyVerdict {
  key: string;
  ops: number;
  /** "exhausted" means the search hit its step budget and proved nothing either way. */
  verdict: "linearizable" | "not-linearizable" | "exhausted";
}

export interface LinearizabilityReport {
  ok: boolean;
  keys: KeyVerdict[];
  /** The first key whose history is not linearizable, with its operations, for the failure message. */
  counterexample?: { key: string; ops: HistoryOp[] };
}

export interface CheckOptions {
  /** Search steps allowed per key before giving up with "exhausted". */
  maxStepsPerKey?: number;
}

/** One step of the single-register model; returns the new state, or undefined if `output` is impossible. */
export function stepRegister(state: KvValue, input: KvInput, output: KvOutput | undefined): { state: KvValue } | undefined {
  switch (input.kind) {
    case "put":
      if (output !== undefined && output.kind !== "put") return undefined;
      return { state: input.value };
    case "get":
      if (output === undefined) return { state };
      if (output.kind !== "get") return undefined;
      return output.value === state ? { state } : undefined;
    case "cas": {
      const matches = state === input.expected;
      if (output === undefined) return { state: matches ? input.value : state };
      if (output.kind !== "cas") return undefined;
      if (output.ok !== matches) return undefined;
      return { state: matches ? input.value : state };
    }
  }
}

interface ListNode {
  isCall: boolean;
  op: number;
  /** For a call: its return node. */
  match: ListNode | undefined;
  prev: ListNode | undefined;
  next: ListNode | undefined;
}

/** Checks one key's operations (all on the same register, initially absent). */
export function checkRegisterHistory(ops: HistoryOp[], maxSteps = 2_000_000): KeyVerdict["verdict"] {
  // An unknown get observed nothing and changed nothing: it can always be linearized at the end.
  const relevant = ops.filter((op) => !(op.input.kind === "get" && op.output === undefined));
  if (relevant.length === 0) return "linearizable";

  type Point = { timeMs: number; isCall: boolean; op: number };
  const points: Point[] = [];
  relevant.forEach((op, i) => {
    if (!(op.returnMs >= op.invokeMs)) throw new RangeError(`operation ${op.id} returns before it is invoked`);
    points.push({ timeMs: op.invokeMs, isCall: true, op: i });
    points.push({ timeMs: op.returnMs, isCall: false, op: i });
  });
  // Calls sort before returns at equal times, so operations that touch in time count as concurrent:
  // the checker never claims an order the clock cannot prove.
  points.sort((a, b) => {
    if (a.timeMs !== b.timeMs) return a.timeMs < b.timeMs ? -1 : 1;
    if (a.isCall !== b.isCall) return a.isCall ? -1 : 1;
    return relevant[a.op]!.id - relevant[b.op]!.id;
  });

  const head: ListNode = { isCall: false, op: -1, match: undefined, prev: undefined, next: undefined };
  const returns = new Map<number, ListNode>();
  let tail = head;
  const nodes: ListNode[] = [];
  for (const p of points) {
    const node: ListNode = { isCall: p.isCall, op: p.op, match: undefined, prev: tail, next: undefined };
    tail.next = node;
    tail = node;
    nodes.push(node);
    if (!p.isCall) returns.set(p.op, node);
  }
  for (const node of nodes) if (node.isCall) node.match = returns.get(node.op);

  const lift = (call: ListNode): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: ListNode): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  let state: KvValue = null;
  let linearized = 0n;
  const seen = new Set<string>();
  const stack: Array<{ call: ListNode; state: KvValue }> = [];
  let entry = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return "exhausted";
    if (entry === undefined) return "not-linearizable";
    if (entry.isCall) {
      const op = relevant[entry.op]!;
      const result = stepRegister(state, op.input, op.output);
      if (result !== undefined) {
        const nextLinearized = linearized | (1n << BigInt(entry.op));
        const memoKey = `${nextLinearized.toString(36)}|${result.state === null ? "\u0000" : result.state}`;
        if (!seen.has(memoKey)) {
          seen.add(memoKey);
          stack.push({ call: entry, state });
          state = result.state;
          linearized = nextLinearized;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return whose call is not yet linearized: this branch is dead, backtrack.
      const top = stack.pop();
      if (top === undefined) return "not-linearizable";
      state = top.state;
      linearized &= ~(1n << BigInt(top.call.op));
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return "linearizable";
}

/** Checks a whole history, partitioned per key (registers are independent, so this is exact). */
export function checkLinearizable(history: HistoryOp[], options: CheckOptions = {}): LinearizabilityReport {
  const byKey = new Map<string, HistoryOp[]>();
  for (const op of history) {
    let list = byKey.get(op.input.key);
    if (list === undefined) byKey.set(op.input.key, (list = []));
    list.push(op);
  }
  const keys: KeyVerdict[] = [];
  let counterexample: LinearizabilityReport["counterexample"];
  for (const key of [...byKey.keys()].sort()) {
    const ops = byKey.get(key)!;
    const verdict = checkRegisterHistory(ops, options.maxStepsPerKey);
    keys.push({ key, ops: ops.length, verdict });
    if (verdict === "not-linearizable" && counterexample === undefined) counterexample = { key, ops };
  }
  return { ok: counterexample === undefined, keys, ...(counterexample ? { counterexample } : {}) };
}

/** A compact one-line rendering of an operation for failure messages. */
export function describeOp(op: HistoryOp): string {
  const i = op.input;
  const call =
    i.kind === "put" ? `put(${i.key},${i.value})` : i.kind === "get" ? `get(${i.key})` : `cas(${i.key},${i.expected},${i.value})`;
  const o = op.output;
  const out = o === undefined ? "?" : o.kind === "put" ? "ok" : o.kind === "get" ? String(o.value) : String(o.ok);
  const ret = op.returnMs === Infinity ? "inf" : String(op.returnMs);
  return `c${op.clientId}#${op.id} ${call}->${out} [${op.invokeMs},${ret}]`;
}
