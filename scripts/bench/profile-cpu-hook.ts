// CPU profile of a daemon for profile-write-path.ts (Node 20 refuses --cpu-prof in NODE_OPTIONS):
// loaded with NODE_OPTIONS="--import tsx --import <this file>" and SHOAL_CPU_PROF_DIR=DIR, every
// `shoal daemon` process starts profiling on its first SIGUSR2 and writes DIR/<pid>.cpuprofile on
// the second, so the profile covers the measured window only (not module loading and start-up).
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

const dir = process.env["SHOAL_CPU_PROF_DIR"];
if (dir !== undefined && process.argv.includes("daemon")) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable");
      session.post("Profiler.setSamplingInterval", { interval: 200 });
      session.post("Profiler.start");
      // SHOAL_HEAP_PROF=1: also a sampling allocation profile (DIR/<pid>.heapprofile), to see what feeds the GC.
      if (process.env["SHOAL_HEAP_PROF"] === "1") session.post("HeapProfiler.startSampling", { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      return;
    }
    running = false;
    if (process.env["SHOAL_HEAP_PROF"] === "1") {
      session.post("HeapProfiler.stopSampling", (err, result) => {
        if (err === null) writeFileSync(join(dir, `${process.pid}.heapprofile`), JSON.stringify(result.profile));
      });
    }
    session.post("Profiler.stop", (err, result) => {
      if (err === null) writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
