// `shoal events` end to end: 3 managers and 1 worker as child processes, process tasks (no images).
// `shoal events --format json` (the real binary) on a follower's socket sees a service created and
// scaled, its tasks' state changes, a node relabelled, a secret created (its data never in the
// stream's bytes) and a node removed (remove + revoke); the leader is SIGKILLed mid-stream and the
// follower's stream goes on: it shows a scale made after the new leader is elected and the dead
// leader going down, while a stream on the dead leader's socket exits non-zero with a sentence.
// Then `--since 1m` replays, `--filter type=service` shows only services, a worker answers "not a
// manager", bad flags exit 2, and Ctrl-C ends a stream with exit 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { REPO_ROOT, ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

const SHOAL_BIN = `${REPO_ROOT}/bin/shoal.js`;

interface EventLine {
  time: string;
  type: string;
  action: string;
  id: string;
  name: string;
  attributes: Record<string, string>;
  index: number;
}

/** A running `shoal events` child: its raw stdout bytes, its parsed lines, and how it ended. */
class EventsProcess {
  readonly child: ChildProcess;
  raw = Buffer.alloc(0);
  stderr = "";
  readonly exited: Promise<number | null>;
  constructor(node: NodeProcess, args: string[]) {
    this.child = spawn(process.execPath, [SHOAL_BIN, "--socket", node.socketPath, "events", ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SHOAL_SOCKET: "" } });
    this.child.stdout!.on("data", (chunk: Buffer) => (this.raw = Buffer.concat([this.raw, chunk])));
    this.child.stderr!.setEncoding("utf8").on("data", (t: string) => (this.stderr += t));
    this.exited = new Promise((done) => this.child.once("close", (code) => done(code)));
  }
  get events(): EventLine[] {
    return this.raw.toString("utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as EventLine);
  }
  find(pred: (e: EventLine) => boolean): EventLine | undefined {
    return this.events.find(pred);
  }
  waitFor(what: string, pred: (e: EventLine) => boolean, timeoutMs = 90_000): Promise<EventLine> {
    return waitFor(`the stream to show ${what}`, async () => {
      if (this.child.exitCode !== null) throw new Error(`shoal events exited with ${this.child.exitCode}: ${this.stderr}`);
      return this.find(pred);
    }, timeoutMs, 100);
  }
}

test("shoal events on a follower: workload, node, secret and CA events, across a leader kill; --since, --filter, errors, Ctrl-C", { timeout: 600_000 }, async (t) => {
  const cluster = new ProcessCluster();
  const streams: EventsProcess[] = [];
  t.after(async () => {
    for (const s of streams) s.child.kill("SIGKILL");
    await cluster.close();
  });
  const [m1, m2, m3, w1] = await Promise.all(["m1", "m2", "m3", "w1"].map((n) => cluster.add(n)));
  const { managerToken, workerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("m3", managerToken, m1!.addr);
  await cluster.join("w1", workerToken, m1!.addr);
  await waitForVoters(m1!, 3, { timeoutMs: 120_000 });
  await cluster.waitReady(m1!, 4, 180_000);
  const leader = await cluster.leader();
  const follower = [m1!, m2!, m3!].find((m) => m !== leader)!;
  const leaderId = (await leader.info()).nodeId;
  const w1Id = (await w1!.info()).nodeId;
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await follower.shoal(args, input === undefined ? {} : { input });
    assert.equal(r.code, 0, `shoal ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };

  // --since: the CLI takes a moment to start; what happened before it subscribed is replayed.
  const stream = new EventsProcess(follower, ["--since", "10m", "--format", "json"]);
  const onLeader = new EventsProcess(leader, ["--since", "10m", "--format", "json"]);
  streams.push(stream, onLeader);
  await ok(["node", "update", "--label-add", "tier=web", w1Id]);
  const label = await stream.waitFor("the node label", (e) => e.type === "node" && e.action === "label" && e.id === w1Id);
  assert.equal(label.attributes["labels_added"], "tier=web");
  await onLeader.waitFor("the node label on the leader's stream", (e) => e.type === "node" && e.action === "label");

  await ok(["service", "create", "--detach", "--name", "web", "--replicas", "1", "--", "sleep", "600"]);
  const created = await stream.waitFor("service create", (e) => e.type === "service" && e.action === "create" && e.name === "web");
  assert.equal(created.attributes["replicas"], "1");
  const running = await stream.waitFor("a task of web running", (e) => e.type === "task" && e.action === "state" && e.attributes["service"] === "web" && e.attributes["state"] === "running", 120_000);
  assert.ok(running.attributes["node"] !== "" && running.attributes["old_state"] !== undefined, JSON.stringify(running));
  await ok(["service", "scale", "web=2"]);
  const scaled = await stream.waitFor("service scale 1→2", (e) => e.type === "service" && e.action === "scale" && e.attributes["replicas"] === "2");
  assert.equal(scaled.attributes["old_replicas"], "1");

  const secretData = `sEcReT-${randomBytes(12).toString("hex")}`;
  await ok(["secret", "create", "api-key", "-"], secretData);
  const secret = await stream.waitFor("secret create", (e) => e.type === "secret" && e.action === "create" && e.name === "api-key");
  assert.deepEqual(Object.keys(secret.attributes), ["zone"]);

  // A worker answers as for any manager command.
  const onWorker = await w1!.shoal(["events", "--since", "1m", "--until", "0s"]);
  assert.equal(onWorker.code, 4, onWorker.stderr);
  assert.match(onWorker.stderr, /not a manager/);

  await ok(["node", "rm", "--force", w1Id]);
  await stream.waitFor("node remove", (e) => e.type === "node" && e.action === "remove" && e.id === w1Id);
  await stream.waitFor("the revocation", (e) => e.type === "ca" && e.action === "revoke" && e.attributes["node"] === w1Id);

  // SIGKILL the leader mid-stream.
  await leader.stop("SIGKILL");
  const broken = await onLeader.exited;
  assert.notEqual(broken, 0, "a stream whose daemon died exits non-zero");
  assert.match(onLeader.stderr, /Error: .*event stream .* broke.*shoal daemon/);
  await cluster.leader(60_000);
  await waitFor("the scale through the new leader", async () => (await follower.shoal(["service", "scale", "web=3"])).code === 0 || undefined, 90_000, 500);
  await stream.waitFor("service scale 2→3 after the new leader", (e) => e.type === "service" && e.action === "scale" && e.attributes["replicas"] === "3");
  await stream.waitFor("the dead leader going down", (e) => e.type === "node" && e.action === "down" && e.id === leaderId, 120_000);

  const all = stream.events;
  assert.ok(!stream.raw.includes(Buffer.from(secretData)), "the secret's data never appears in the stream");
  for (let i = 1; i < all.length; i++) assert.ok(all[i]!.index >= all[i - 1]!.index, `events are in raft index order: ${JSON.stringify(all.slice(i - 1, i + 1))}`);
  t.diagnostic(`${all.length} events on the follower's stream: ${[...new Set(all.map((e) => `${e.type} ${e.action}`))].join(", ")}`);

  // A new call replays what it kept.
  const replayOf = async (since: string): Promise<EventLine[]> => {
    const r = await follower.shoal(["events", "--since", since, "--until", "0s", "--format", "json"]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as EventLine);
  };
  const lastMinute = await replayOf("1m");
  assert.ok(lastMinute.some((e) => e.type === "service" && e.action === "scale" && e.attributes["replicas"] === "3"), `--since 1m replays the latest scale: ${JSON.stringify(lastMinute)}`);
  assert.ok(lastMinute.every((e) => Date.parse(e.time) >= Date.now() - 120_000), "and nothing much older");
  const replayed = await replayOf("30m");
  for (const want of ["service create", "service scale", "node label", "secret create", "node remove", "ca revoke", "node down", "task state"]) {
    assert.ok(replayed.some((e) => `${e.type} ${e.action}` === want), `--since 30m replays "${want}"`);
  }
  const services = await follower.shoal(["events", "--since", "30m", "--until", "0s", "--filter", "type=service", "--format", "json"]);
  assert.equal(services.code, 0, services.stderr);
  const serviceEvents = services.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as EventLine);
  assert.ok(serviceEvents.length >= 3, services.stdout);
  assert.deepEqual([...new Set(serviceEvents.map((e) => e.type))], ["service"], "--filter type=service shows only services");
  const human = await follower.shoal(["events", "--since", "30m", "--until", "0s", "--filter", "type=service"]);
  assert.match(human.stdout, /^\d{4}-\d\d-\d\dT\S+Z service create [0-9a-z]{25} \(name=web, .*replicas=1/m);

  // Parse errors.
  for (const args of [["--since", "yesterday"], ["--filter", "type=pods"], ["--filter", "image=x"]]) {
    const bad = await follower.shoal(["events", ...args]);
    assert.equal(bad.code, 2, `${args.join(" ")}: ${bad.stderr}`);
    assert.match(bad.stderr, /^Error: /);
  }

  // Ctrl-C ends a stream cleanly.
  stream.child.kill("SIGINT");
  assert.equal(await stream.exited, 0, `Ctrl-C: ${stream.stderr}`);
});
