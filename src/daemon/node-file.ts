// `DIR/node.json`: the node's non-secret metadata (IDs, addresses, autolock flag, known managers),
// written atomically. Certificates and keys live in their own files; nothing here is secret.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { writeFileAtomic } from "../storage/index.js";

export const NODE_FILE_NAME = "node.json";
const FORMAT_VERSION = 1;

export interface RaftTimingFile {
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
}

export interface NodeFile {
  nodeId: string;
  clusterId: string;
  /** Decimal; "" when this node is not a raft member. */
  raftId: string;
  advertiseAddr: string;
  autolock: boolean;
  /** Managers the agent may connect to, remembered across restarts. */
  managers: string[];
  raftTiming: RaftTimingFile;
}

export function nodeFilePath(dataDir: string): string {
  return join(dataDir, NODE_FILE_NAME);
}

export async function readNodeFile(dataDir: string): Promise<NodeFile | undefined> {
  let text: string;
  try {
    text = await readFile(nodeFilePath(dataDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ShoalError("KEY_FILE_INVALID", `${nodeFilePath(dataDir)} is not valid JSON; restore it or leave and rejoin the cluster`);
  }
  const p = parsed as Partial<NodeFile> & { version?: number };
  if (
    p.version !== FORMAT_VERSION ||
    !isValidId(p.nodeId) ||
    !isValidId(p.clusterId) ||
    typeof p.raftId !== "string" ||
    !/^\d*$/.test(p.raftId) ||
    typeof p.advertiseAddr !== "string" ||
    typeof p.autolock !== "boolean" ||
    !Array.isArray(p.managers) ||
    typeof p.raftTiming !== "object"
  ) {
    throw new ShoalError("KEY_FILE_INVALID", `${nodeFilePath(dataDir)} does not hold valid node metadata; restore it or leave and rejoin the cluster`);
  }
  return p as NodeFile;
}

export async function writeNodeFile(dataDir: string, node: NodeFile): Promise<void> {
  await writeFileAtomic(nodeFilePath(dataDir), JSON.stringify({ version: FORMAT_VERSION, ...node }, null, 2) + "\n", 0o600);
}
