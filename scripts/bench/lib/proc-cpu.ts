// CPU time of other processes from /proc (Linux), so a benchmark can report CPU per operation of
// the servers it drives: on a CPU-saturated machine that, not wall-clock rate, is what moves.
import { readFileSync } from "node:fs";

/** utime + stime of a process in ms (USER_HZ is 100 on Linux); NaN when it cannot be read. */
export function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    // Fields after the ")" closing the command name: state is field 3; utime and stime are 14 and 15.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Sum of processCpuMs over several processes. */
export function totalCpuMs(pids: readonly (number | undefined)[]): number {
  return pids.reduce((sum: number, pid) => sum + processCpuMs(pid), 0);
}
