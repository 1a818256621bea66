// Golden interaction tests in the spirit of etcd's datadriven raft tests: each testdata/*.txt file
// is a script of commands, each followed by `----` and the output it must produce. REWRITE=1
// regenerates the outputs (then read the diff: a golden file that records a bug is worse than none).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isShoalError } from "../../src/base/errors.js";
import { ConfChangeType, NO_NODE, type RaftId } from "../../src/raft/core/index.js";
import { Cluster, fmtConf, fmtEntry, fmtId, type NodeOptions } from "./env.js";

const dataDir = join(import.meta.dirname, "testdata");
const rewrite = process.env.REWRITE === "1";
const enc = new TextEncoder();

function parseIds(text: string): RaftId[] {
  const inner = text.replace(/^\(|\)$/g, "").trim();
  return inner === "" ? [] : inner.split(",").map((s) => BigInt(s.trim()));
}

function parseArgs(args: string[]): { positional: string[]; named: Map<string, string> } {
  const positional: string[] = [];
  const named = new Map<string, string>();
  for (const a of args) {
    const eq = a.indexOf("=");
    if (eq > 0) named.set(a.slice(0, eq), a.slice(eq + 1));
    else positional.push(a);
  }
  return { positional, named };
}

class Interpreter {
  cluster: Cluster | undefined;

  private get c(): Cluster {
    if (this.cluster === undefined) throw new Error("add-nodes first");
    return this.cluster;
  }

  run(line: string): string[] {
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const { positional, named } = parseArgs(rest);
    const out: string[] = [];
    const id = (i = 0): RaftId => BigInt(positional[i]!);
    try {
      switch (cmd) {
        case "add-nodes":
          this.addNodes(Number(positional[0]), named, out);
          break;
        case "campaign":
          this.c.node(id()).core.campaign();
          break;
        case "propose": {
          const pos = this.c.node(id()).core.propose(enc.encode(positional[1] ?? ""));
          out.push(`proposed at ${pos.index}@t${pos.term}`);
          break;
        }
        case "propose-bytes": {
          const pos = this.c.node(id()).core.propose(new Uint8Array(Number(positional[1])).fill(120));
          out.push(`proposed at ${pos.index}@t${pos.term}`);
          break;
        }
        case "propose-conf-change": {
          const type = { "add-learner": ConfChangeType.AddLearner, promote: ConfChangeType.PromoteLearner, remove: ConfChangeType.RemoveNode }[positional[1]!];
          if (type === undefined) throw new Error(`unknown conf change ${positional[1]}`);
          const pos = this.c.node(id()).core.proposeConfChange({ type, nodeId: id(2), context: new Uint8Array(0) });
          out.push(`proposed at ${pos.index}@t${pos.term}`);
          break;
        }
        case "stabilize":
          this.c.stabilize(out, positional.length > 0 ? positional.map((p) => BigInt(p)) : undefined);
          break;
        case "process-ready":
          for (const p of positional) {
            out.push(`> ${p} handling Ready`);
            if (!this.c.processReady(BigInt(p), out)) out.push("  <empty>");
          }
          break;
        case "deliver-msgs":
          for (const p of positional) this.c.deliver(BigInt(p), out);
          break;
        case "tick":
          for (let i = 0; i < Number(positional[1] ?? 1); i++) this.c.node(id()).core.tick();
          break;
        case "tick-election":
          for (const p of positional) for (let i = 0; i < this.c.options.electionTicks; i++) this.c.node(BigInt(p)).core.tick();
          break;
        case "tick-heartbeat":
          for (const p of positional) for (let i = 0; i < this.c.options.heartbeatTicks; i++) this.c.node(BigInt(p)).core.tick();
          break;
        case "partition":
          for (const p of positional) this.c.isolate(BigInt(p));
          break;
        case "heal":
          this.c.heal();
          break;
        case "drop":
          for (const p of positional) this.c.dropped.add(p);
          break;
        case "compact": {
          const node = this.c.node(id());
          this.c.compact(id(), Number(positional[1]));
          const st = node.core.status();
          out.push(`log now ${st.firstIndex}..${st.lastIndex}`);
          break;
        }
        case "transfer-leadership":
          this.c.node(BigInt(named.get("from")!)).core.transferLeadership(BigInt(named.get("to")!));
          break;
        case "read-index":
          this.c.node(id()).core.readIndex(enc.encode(positional[1] ?? ""));
          break;
        case "report-snapshot":
          this.c.node(id()).core.reportSnapshot(id(1), positional[2] !== "failed");
          break;
        case "report-unreachable":
          this.c.node(id()).core.reportUnreachable(id(1));
          break;
        case "restart":
          this.c.restart(id());
          break;
        case "status":
          this.status(id(), out);
          break;
        case "log":
          this.log(id(), out);
          break;
        case "raft-state":
          for (const nid of this.c.ids()) {
            const st = this.c.node(nid).core.status();
            out.push(`${fmtId(nid)}: ${st.softState.role} term=${st.hardState.term} lead=${fmtId(st.softState.leader)} commit=${st.hardState.commit} last=${st.lastIndex}`);
          }
          break;
        default:
          throw new Error(`unknown command ${cmd}`);
      }
    } catch (err) {
      if (isShoalError(err)) out.push(`error ${err.code}: ${err.message}`);
      else throw err;
    }
    return out.length === 0 ? ["ok"] : out;
  }

  private addNodes(count: number, named: Map<string, string>, out: string[]): void {
    const opts: Partial<NodeOptions> = {};
    if (named.has("voters")) opts.voters = parseIds(named.get("voters")!);
    if (named.has("learners")) opts.learners = parseIds(named.get("learners")!);
    if (named.has("index")) opts.snapshotIndex = Number(named.get("index"));
    if (named.has("prevote")) opts.preVote = named.get("prevote") === "true";
    if (named.has("checkquorum")) opts.checkQuorum = named.get("checkquorum") === "true";
    if (named.has("max-uncommitted")) opts.maxUncommittedEntriesBytes = Number(named.get("max-uncommitted"));
    if (named.has("max-msg")) opts.maxSizePerMsgBytes = Number(named.get("max-msg"));
    if (named.has("inflight")) opts.maxInflightMsgs = Number(named.get("inflight"));
    if (named.has("fault")) opts.faults = { [named.get("fault")!]: true };
    if (this.cluster === undefined) this.cluster = new Cluster(opts);
    let next = this.cluster.ids().reduce((m, i) => (i > m ? i : m), 0n) + 1n;
    for (let i = 0; i < count; i++, next++) {
      this.cluster.addNode(next, opts);
      const st = this.cluster.node(next).core.status();
      out.push(`node ${next}: ${fmtConf(st.confState)} first=${st.firstIndex} last=${st.lastIndex}`);
    }
  }

  private status(nid: RaftId, out: string[]): void {
    const st = this.c.node(nid).core.status();
    out.push(`${fmtId(nid)}: ${st.softState.role} term=${st.hardState.term} vote=${fmtId(st.hardState.vote)} lead=${fmtId(st.softState.leader)}`);
    out.push(`  commit=${st.hardState.commit} applied=${st.applied} log=${st.firstIndex}..${st.lastIndex} ${fmtConf(st.confState)}`);
    if (st.leadTransferee !== NO_NODE) out.push(`  transferring to ${fmtId(st.leadTransferee)}`);
    const peers = [...st.progress.keys()].sort((a, b) => (a < b ? -1 : 1));
    for (const p of peers) {
      const pr = st.progress.get(p)!;
      out.push(`  ${fmtId(p)}: ${pr.state} match=${pr.match} next=${pr.next} inflight=${pr.inflight}${pr.recentActive ? " active" : ""}`);
    }
  }

  private log(nid: RaftId, out: string[]): void {
    const node = this.c.node(nid);
    const s = node.storage;
    if (s.snapshot !== undefined) out.push(`snapshot ${s.snapshot.index}@t${s.snapshot.term} ${fmtConf(s.snapshot.confState)}`);
    for (const e of s.entries) out.push(fmtEntry(e));
    out.push(`applied state: [${node.applied.join(" ")}]`);
  }
}

/** Runs a script; returns the text with actual outputs in place of the expected ones. */
export function runScript(text: string): { actual: string; mismatches: string[] } {
  const lines = text.split("\n");
  const result: string[] = [];
  const mismatches: string[] = [];
  const interp = new Interpreter();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "" || line.startsWith("#")) {
      result.push(line);
      i++;
      continue;
    }
    i++;
    const expected: string[] = [];
    if (lines[i] === "----") {
      i++;
      while (i < lines.length && lines[i]!.trim() !== "") expected.push(lines[i++]!);
    }
    const actual = interp.run(line);
    result.push(line, "----", ...actual);
    if (expected.join("\n") !== actual.join("\n")) {
      mismatches.push(`command "${line}":\n--- expected\n${expected.join("\n")}\n--- actual\n${actual.join("\n")}`);
    }
  }
  return { actual: result.join("\n"), mismatches };
}

for (const file of readdirSync(dataDir).filter((f) => f.endsWith(".txt")).sort()) {
  test(`interaction script ${file}`, () => {
    const path = join(dataDir, file);
    const text = readFileSync(path, "utf8");
    const { actual, mismatches } = runScript(text);
    if (rewrite) {
      if (actual !== text) writeFileSync(path, actual);
      return;
    }
    assert.equal(mismatches.length, 0, `${file}: first mismatch of ${mismatches.length}\n${mismatches[0]}`);
  });
}
