// What a chaos history says beyond linearizability: which acknowledged writes the cluster lost.
// A write acknowledged at raft index i on key k is lost when k's final value (read back after every
// manager was SIGKILLed and restarted) was written at an index below i, or when the final index is
// one that an acknowledged write of another value holds.
import { describeOp } from "../../cluster-sim/linearizability.js";
import type { RecordedOp } from "./workload.js";

export interface FinalValue {
  value: string | null;
  index: bigint;
}

export interface LossReport {
  acknowledged: RecordedOp[];
  lost: RecordedOp[];
  problems: string[];
}

export function acknowledgedWrites(history: readonly RecordedOp[]): RecordedOp[] {
  return history.filter((op) => op.index !== undefined && (op.output?.kind === "put" || (op.output?.kind === "cas" && op.output.ok)));
}

export function findLostWrites(history: readonly RecordedOp[], finals: ReadonlyMap<string, FinalValue>): LossReport {
  const acknowledged = acknowledgedWrites(history);
  const lost = acknowledged.filter((op) => BigInt(op.index!) > (finals.get(op.input.key)?.index ?? 0n));
  const problems: string[] = [];
  if (lost.length > 0) problems.push(`${lost.length} acknowledged writes lost, e.g. ${describeOp(lost[0]!)} at index ${lost[0]!.index}`);
  for (const [key, final] of finals) {
    const writer = acknowledged.find((op) => op.input.key === key && op.index === String(final.index));
    if (writer !== undefined && writer.input.kind !== "get" && writer.input.value !== final.value) {
      problems.push(`${key} reads ${String(final.value)} at index ${final.index}, but ${describeOp(writer)} wrote there`);
    }
  }
  return { acknowledged, lost, problems };
}
