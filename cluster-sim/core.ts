// The core under test: the simulator runs the same RaftCore the daemon runs.
import { RaftCore } from "../src/raft/core/index.js";
import type { CoreFactory } from "./simulation.js";

export const createRealCore: CoreFactory = (config, restore) => new RaftCore(config, restore);
