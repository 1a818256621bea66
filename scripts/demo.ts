// `npm run demo`: a narrated run of a real local Shoal cluster (5 `shoal daemon` processes on
// 127.0.0.1, embedded encrypted LevelDB, mutual TLS): init with autolock, joins, a zoned runc service
// with a zone-a secret from a local registry, a replicated write, a locked restart and unlock,
// removal with certificate revocation (the service's tasks stay in their zone), a leader failover, tear-down.
// Every step checks what it narrates; the exit code is non-zero if any step does not behave so.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { createSecureChannel } from "../src/transport/client.js";
import { DispatcherClient } from "../src/proto/shoal/v1/dispatcher.js";
import { info, listNodes, nodeByAddr, waitForLeader, waitUntilReady } from "./lib/local-cluster.js";
import { check, elapsed, run, say, showCommand, step } from "./lib/narration.js";
import { ProcessCluster, removeOnExit, type NodeProcess } from "./lib/process-cluster.js";
import { waitFor } from "./lib/wait.js";
import {
  checkNoZoneNodeLeft,
  checkSecretConfinement,
  checkTasksMovedWithinZone,
  checkZoneNodeBack,
  deleteContainersOnExit,
  deployZonedService,
  labelZones,
  leftoverContainers,
  prepareImage,
  type DemoNode,
  type ImageStage,
} from "./demo-workloads.js";

/** A Dispatcher call made directly with a node's certificate: the gRPC status code it gets (0 = OK). */
function heartbeatWithCertificate(addr: string, identity: { certPem: string; keyPem: string; rootCaPem: string; clusterId: string }): Promise<{ code: grpc.status; details: string }> {
  const channel = createSecureChannel(addr, {
    rootCaPem: identity.rootCaPem,
    certPem: identity.certPem,
    keyPem: identity.keyPem,
    expectServerRole: "swarm-manager",
    clusterId: identity.clusterId,
  });
  const client = channel.client(DispatcherClient);
  return new Promise((resolve) => {
    client.heartbeat({ sessionId: "demo-probe" }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
      channel.close();
      resolve(err === null ? { code: grpc.status.OK, details: "" } : { code: err.code, details: err.details });
    });
  });
}

function firstLineOf(file: string): string {
  return fs.readFileSync(file, "utf8").split("\n")[0] ?? "";
}

async function main(): Promise<void> {
  const demoNodes: DemoNode[] = [];
  // Registered before removeOnExit's hook, so that it runs first: it needs the runc state under the data dirs.
  deleteContainersOnExit(demoNodes);
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-demo-"));
  removeOnExit(baseDir);
  // Secret files belong on tmpfs; each node wipes its own secrets dir at start, so each gets one.
  const secretsRoot = fs.mkdtempSync(path.join(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), "shoal-demo-secrets-"));
  removeOnExit(secretsRoot);
  const cluster = new ProcessCluster([], baseDir);
  let images: ImageStage | undefined;
  let leftBehind: string[] = [];
  try {
    images = await prepareImage();

    step("start 5 daemons (3 future managers, 2 future workers), each with its own data dir, port and secrets dir");
    const names = ["manager1", "manager2", "manager3", "worker1", "worker2"];
    const secretsDirOf = (name: string): string => path.join(secretsRoot, name);
    const nodes = await Promise.all(names.map((name) => cluster.add(name, ["--secrets-dir", secretsDirOf(name)])));
    const [m1, m2, m3, w1, w2] = nodes as [NodeProcess, NodeProcess, NodeProcess, NodeProcess, NodeProcess];
    const managers = [m1, m2, m3];
    for (const n of nodes) say(`${n.name.padEnd(9)} shoal --data-dir ${n.dataDir} daemon --listen-addr ${n.addr} --secrets-dir ${secretsDirOf(n.name)}`);
    say(`(data under ${baseDir}, secrets on tmpfs under ${secretsRoot}; each node logs to ${baseDir}/<name>.log)`);

    step("create the cluster on manager1 with autolock");
    const init = await run(m1, ["init", "--autolock"], { maxLines: 8 });
    const unlockKey = /SWMKEY-1-[A-Za-z0-9+/]+/.exec(init.stdout)?.[0];
    check(unlockKey !== undefined, "init --autolock printed no unlock key");
    say(`an unlock key was issued (${unlockKey.length} characters; kept in this process only, never printed)`);
    const m1Info = await info(m1);
    check(m1Info.role === "manager" && m1Info.autolock && m1Info.leaderNodeId === m1Info.nodeId, "manager1 is not an autolocked leader after init");
    const clusterId = m1Info.clusterId;
    say(`cluster ${clusterId}; the node key on disk: "${firstLineOf(path.join(m1.dataDir, "certificates", "node.key"))}"`);

    step("join 2 managers and 2 workers with the join tokens");
    const [workerTokenResult, managerTokenResult] = await Promise.all([
      m1.shoal(["join-token", "worker", "-q"]),
      m1.shoal(["join-token", "manager", "-q"]),
    ]);
    showCommand(m1, ["join-token", "worker", "-q"], workerTokenResult);
    showCommand(m1, ["join-token", "manager", "-q"], managerTokenResult);
    check(workerTokenResult.code === 0 && managerTokenResult.code === 0, "join-token failed");
    const workerToken = workerTokenResult.stdout.trim();
    const managerToken = managerTokenResult.stdout.trim();
    check(workerToken.startsWith("SWMTKN-1-") && managerToken.startsWith("SWMTKN-1-") && workerToken !== managerToken, "join tokens are malformed");
    // Managers join one at a time (raft membership changes are one at a time); workers meanwhile.
    const joinWorkers = Promise.all([w1, w2].map((w) => w.shoal(["join", "--token", workerToken, m1.addr]).then((r) => ({ w, r }))));
    for (const m of [m2, m3]) await run(m, ["join", "--token", managerToken, m1.addr]);
    for (const { w, r } of await joinWorkers) {
      showCommand(w, ["join", "--token", workerToken, m1.addr], r);
      check(r.code === 0, `${w.name} failed to join`);
    }
    const ids = new Map<NodeProcess, string>();
    for (const n of nodes) ids.set(n, (await info(n)).nodeId);
    for (const n of nodes) await waitUntilReady(m1, ids.get(n)!, 30_000);
    const ls = await run(m1, ["node", "ls"]);
    check(ls.stdout.trim().split("\n").length === 6, "node ls does not list 5 nodes");
    const views = await listNodes(m1);
    check(views.filter((v) => v.role === "manager" && v.status === "ready").length === 3, "node ls does not show 3 ready managers");
    check(views.filter((v) => v.role === "worker" && v.status === "ready").length === 2, "node ls does not show 2 ready workers");
    const worker1Info = await run(w1, ["info"], { maxLines: 5 });
    check(/Role:\s+worker/.test(worker1Info.stdout), "worker1's info does not say worker");
    for (const n of nodes) demoNodes.push({ node: n, id: ids.get(n)!, secretsDir: secretsDirOf(n.name) });
    const [, , , dw1, dw2] = demoNodes as [DemoNode, DemoNode, DemoNode, DemoNode, DemoNode];

    await labelZones(m1, [dw1, dw2]);
    const deployed = await deployZonedService(m1, images.image, [dw1, dw2], demoNodes);
    await checkSecretConfinement(m1, deployed, demoNodes, baseDir);

    step("write through the control API: a secret, created on manager2 (a follower forwards it to the leader over mTLS)");
    const leaderBefore = await waitForLeader(m1, { timeoutMs: 10_000 });
    const secretValue = randomBytes(24).toString("base64");
    await run(m2, ["secret", "create", "demo-db-password", "-"], { input: secretValue, stdinNote: "secret bytes on stdin" });
    const lsResults = await Promise.all(managers.map((m) => m.shoal(["secret", "ls", "--format", "json"])));
    for (const [i, m] of managers.entries()) {
      const r = lsResults[i]!;
      check(r.code === 0, `secret ls on ${m.name} failed`);
      const names = (JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name);
      check(names.includes("demo-db-password"), `${m.name} does not list the secret`);
      say(`${m.name}$ shoal secret ls --format json   → ${JSON.stringify(names)}`);
    }
    check(!lsResults.some((r) => r.stdout.includes(secretValue)), "a read returned the secret's data");
    say("no read returns the secret's bytes; the failover below shows the write lives on the surviving managers too");
    const infos = await Promise.all(managers.map((m) => info(m)));
    for (const [i, m] of managers.entries()) {
      const v = infos[i]!;
      say(`${m.name}$ shoal info   → role ${v.role}, state ${v.state}, leader ${v.leaderAddr}, ${v.managers.length} managers`);
      check(v.role === "manager" && v.state === "active" && v.leaderNodeId === leaderBefore.leaderNodeId && v.managers.length === 3, `${m.name}'s info disagrees`);
    }

    step("autolock: stop a manager (SIGTERM) and start it again: it comes back locked");
    const follower = managers.find((m) => m.addr !== leaderBefore.leaderAddr)!;
    await follower.stop("SIGTERM");
    say(`${follower.name} stopped; restarting it on the same data dir`);
    await follower.start();
    const lockedInfo = await run(follower, ["info"], { maxLines: 4 });
    check(/State:\s+locked/.test(lockedInfo.stdout) && (await info(follower)).locked, `${follower.name} did not come back locked`);
    const lockedLs = await run(follower, ["node", "ls"], { expectFail: true });
    check(/locked/i.test(lockedLs.stderr), "a locked manager answered node ls");
    const wrongKey = `SWMKEY-1-${randomBytes(32).toString("base64").replace(/=+$/, "")}`;
    const wrong = await run(follower, ["unlock"], { input: `${wrongKey}\n`, stdinNote: "a wrong key on stdin", expectFail: true });
    check((await info(follower)).locked, `${follower.name} unlocked with a wrong key`);
    check(!wrong.stderr.includes(wrongKey), "the unlock error echoed the key");
    await run(follower, ["unlock"], { input: `${unlockKey}\n`, stdinNote: "the right key on stdin" });
    const rejoined = await waitFor(
      `${follower.name} to rejoin with a leader`,
      async () => {
        const v = await info(follower);
        return !v.locked && v.state === "active" && v.leaderNodeId !== "" ? v : undefined;
      },
      20_000,
    );
    say(`${follower.name}$ shoal info   → state ${rejoined.state}, locked ${rejoined.locked}, leader ${rejoined.leaderAddr}`);
    await waitUntilReady(m1, ids.get(follower)!, 20_000);

    step("remove worker1 (node rm --force): its certificate is refused from then on");
    const w1Certs = path.join(w1.dataDir, "certificates");
    const w1Identity = {
      certPem: fs.readFileSync(path.join(w1Certs, "node.crt"), "utf8"),
      keyPem: fs.readFileSync(path.join(w1Certs, "node.key"), "utf8"),
      rootCaPem: fs.readFileSync(path.join(w1Certs, "root-ca.crt"), "utf8"),
      clusterId,
    };
    const probeAddr = (await info(m1)).leaderAddr;
    const before = await heartbeatWithCertificate(probeAddr, w1Identity);
    say(`direct Dispatcher.Heartbeat to ${probeAddr} with worker1's certificate: ${grpc.status[before.code]} (${before.details}) — authenticated, just no session`);
    check(before.code !== grpc.status.PERMISSION_DENIED && before.code !== grpc.status.UNAVAILABLE, "worker1's certificate was refused before removal");
    await run(m1, ["node", "rm", "--force", ids.get(w1)!]);
    const rmDoneMs = performance.now();
    const after = await waitFor(
      "worker1's certificate to be refused",
      async () => {
        const r = await heartbeatWithCertificate(probeAddr, w1Identity);
        return r.code === grpc.status.PERMISSION_DENIED ? r : undefined;
      },
      5_000,
    );
    say(`the same call after node rm: ${grpc.status[after.code]} (${after.details}), ${Math.round(performance.now() - rmDoneMs)} ms after \`node rm\` returned`);
    const w1After = await waitFor(
      "worker1 to notice its removal",
      async () => {
        const v = await info(w1);
        return v.state === "inactive" ? v : undefined;
      },
      15_000,
    );
    check(w1After.clusterId === "", "worker1 still thinks it is in the cluster");
    const refusal = fs
      .readFileSync(w1.logFile, "utf8")
      .split("\n")
      .find((line) => /removed from the cluster/.test(line));
    check(refusal !== undefined, "worker1's log does not record the refusal");
    say(`worker1's log: ${(JSON.parse(refusal) as { msg: string }).msg}`);
    say("worker1 wiped its certificates; it can come back only by joining again with a token, as a new node");
    const remaining = await listNodes(m1);
    check(!remaining.some((v) => v.id === ids.get(w1)), "node ls still lists worker1");
    check(remaining.length === 4, "node ls should list 4 nodes");
    say(`node ls now lists ${remaining.length} nodes`);
    await checkTasksMovedWithinZone(m1, dw1, dw2, demoNodes, rmDoneMs);
    await checkNoZoneNodeLeft(m1, dw2, demoNodes);

    step("leader failover: SIGKILL the leader, a new one is elected, writes go on");
    const leaderNow = await waitForLeader(m1, { timeoutMs: 10_000 });
    const leaderNode = nodeByAddr(managers, leaderNow.leaderAddr);
    check(leaderNode !== undefined, `no local node has the leader's address ${leaderNow.leaderAddr}`);
    const survivor = managers.find((m) => m !== leaderNode)!;
    say(`leader is ${leaderNode.name} (${leaderNow.leaderAddr}); kill -9 it`);
    const killMs = performance.now();
    await leaderNode.stop("SIGKILL");
    const newLeader = await waitForLeader(survivor, { timeoutMs: 20_000, notNodeId: leaderNow.leaderNodeId, intervalMs: 20 });
    const electedMs = performance.now() - killMs;
    await run(survivor, ["info"], { maxLines: 14 });
    say(`new leader ${nodeByAddr(managers, newLeader.leaderAddr)?.name ?? newLeader.leaderAddr} seen ${Math.round(electedMs)} ms after the kill`);
    await run(survivor, ["secret", "create", "demo-after-failover", "-"], { input: "v2", stdinNote: "secret bytes on stdin" });
    const afterLs = await run(survivor, ["secret", "ls"]);
    check(afterLs.stdout.includes("demo-db-password") && afterLs.stdout.includes("demo-after-failover"), "the new leader does not hold both secrets");
    say("both secrets are there: the first was replicated before its leader died");
    await checkZoneNodeBack(survivor, dw2, demoNodes);
  } finally {
    step("tear down: stop every daemon and delete the temp dirs");
    await cluster.stopAll();
    const left = (leftBehind = await leftoverContainers(demoNodes));
    await images?.registry.stop();
    fs.rmSync(baseDir, { recursive: true, force: true });
    fs.rmSync(secretsRoot, { recursive: true, force: true });
    say(`all daemons and the registry stopped; ${baseDir} and ${secretsRoot} deleted (exist now: ${fs.existsSync(baseDir) || fs.existsSync(secretsRoot)})`);
    say(left.length === 0 ? "no runc container is left on any node" : `runc containers left behind (now deleted): ${left.join(", ")}`);
  }
  check(leftBehind.length === 0, `stopping the daemons left runc containers running: ${leftBehind.join(", ")}`);
}

main().then(
  () => {
    console.log(`\ndemo finished in ${elapsed()}: every step above ran for real and behaved as narrated`);
    process.exit(0);
  },
  (err: unknown) => {
    console.error(`\ndemo FAILED after ${elapsed()}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
