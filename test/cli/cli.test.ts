// Runs the real `bin/shoal.js` against a fake daemon on a unix socket: flags become the right
// request fields, output formats hold, errors become one sentence and a stable exit code, and
// secrets and unlock keys never reach the output.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ShoalError } from "../../src/base/errors.js";
import { UpdateClusterRequest_Autolock } from "../../src/proto/shoal/v1/control.js";
import {
  ManagerStatus_Reachability,
  NodeAvailability,
  NodeRole,
  NodeState,
  TaskState,
} from "../../src/proto/shoal/v1/objects.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const SELF = id("self");
const WORKER = id("wrk1");
const WORKER_TOKEN = `SWMTKN-1-${"d".repeat(50)}-${"s".repeat(25)}`;
const MANAGER_TOKEN = `SWMTKN-1-${"d".repeat(50)}-${"m".repeat(25)}`;
const UNLOCK_KEY = "SWMKEY-1-q2VjcmV0LXVubG9jay1rZXktZm9yLXRlc3RzLW9ubHktMTIz";

let fake: FakeDaemon;
let sock: string[];

before(async () => {
  fake = await FakeDaemon.start();
  sock = ["--socket", fake.socketPath];
});
after(async () => {
  await fake.stop();
});

const info = () => ({
  nodeId: SELF,
  clusterId: id("clu"),
  role: NodeRole.NODE_ROLE_MANAGER,
  state: "active",
  addr: "10.0.0.1:4242",
  leaderAddr: "10.0.0.1:4242",
  leaderNodeId: SELF,
  managers: [{ nodeId: SELF, addr: "10.0.0.1:4242", leader: true, reachable: true }],
});

function nodes(version = 7n) {
  return [
    {
      id: SELF,
      meta: { version: 3n },
      spec: { desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels: {} },
      description: { hostname: "mgr-1" },
      status: { state: NodeState.NODE_STATE_READY },
      managerStatus: { leader: true, addr: "10.0.0.1:4242", reachability: ManagerStatus_Reachability.REACHABILITY_REACHABLE },
      role: NodeRole.NODE_ROLE_MANAGER,
    },
    {
      id: WORKER,
      meta: { version },
      spec: { desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels: { old: "x", keep: "y" } },
      description: { hostname: "web-1" },
      status: { state: NodeState.NODE_STATE_DOWN },
      role: NodeRole.NODE_ROLE_WORKER,
    },
  ];
}

test("join-token --rotate --expires-in 1h maps to the request and prints the join command", async () => {
  fake.reset({ getJoinToken: () => ({ token: WORKER_TOKEN, expiresAt: new Date("2030-01-01T00:00:00Z") }), info });
  const r = await runShoal([...sock, "join-token", "worker", "--rotate", "--expires-in", "1h"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("getJoinToken"), [{ role: NodeRole.NODE_ROLE_WORKER, rotate: true, expiresInSeconds: 3600n }]);
  assert.match(r.stdout, new RegExp(`shoal join --token ${WORKER_TOKEN} 10\\.0\\.0\\.1:4242`));
  assert.match(r.stdout, /expires at 2030-01-01T00:00:00\.000Z/);
});

test("join-token -q and unlock-key -q print exactly the token or key", async () => {
  fake.reset({ getJoinToken: () => ({ token: MANAGER_TOKEN }), getUnlockKey: () => ({ unlockKey: UNLOCK_KEY }) });
  const [token, key] = await Promise.all([
    runShoal([...sock, "join-token", "manager", "-q"]),
    runShoal([...sock, "unlock-key", "--rotate", "-q"]),
  ]);
  assert.equal(token.stdout, `${MANAGER_TOKEN}\n`);
  assert.equal(key.stdout, `${UNLOCK_KEY}\n`);
  assert.equal(token.code, 0);
  assert.equal(key.code, 0);
  assert.deepEqual(fake.callsTo("getJoinToken"), [{ role: NodeRole.NODE_ROLE_MANAGER, rotate: false, expiresInSeconds: 0n }]);
  assert.deepEqual(fake.callsTo("getUnlockKey"), [{ rotate: true }]);
});

test("unlock-key without autolock is a clear error, not an empty line", async () => {
  fake.reset({ getUnlockKey: () => ({ unlockKey: "" }) });
  const r = await runShoal([...sock, "unlock-key", "-q"]);
  assert.equal(r.code, 6);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /autolock is off.*shoal update --autolock=true/);
});

test("info --format json parses with stable fields; info prints labelled lines", async () => {
  fake.reset({ info });
  const [json, human] = await Promise.all([runShoal([...sock, "info", "--format", "json"]), runShoal([...sock, "info"])]);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.nodeId, SELF);
  assert.equal(parsed.role, "manager");
  assert.equal(parsed.locked, false);
  assert.equal(parsed.state, "active");
  assert.equal(parsed.leaderNodeId, SELF);
  assert.deepEqual(parsed.managers, [{ nodeId: SELF, addr: "10.0.0.1:4242", leader: true, reachable: true }]);
  assert.match(human.stdout, new RegExp(`^Node ID: +${SELF}$`, "m"));
  assert.match(human.stdout, /^Role: +manager$/m);
  assert.match(human.stdout, /^State: +active$/m);
  assert.match(human.stdout, new RegExp(`^Leader: +${SELF} \\(10\\.0\\.0\\.1:4242\\)$`, "m"));
});

test("init maps its flags and prints the worker join command and the unlock key once", async () => {
  fake.reset({
    init: () => ({ nodeId: SELF, clusterId: id("clu"), workerToken: WORKER_TOKEN, managerToken: MANAGER_TOKEN, unlockKey: UNLOCK_KEY }),
  });
  const r = await runShoal([...sock, "init", "--autolock", "--cert-expiry", "2160h", "--advertise-addr", "10.0.0.1:4242"]);
  assert.equal(r.code, 0, r.stderr);
  const [req] = fake.callsTo("init");
  assert.equal(req.autolock, true);
  assert.equal(req.certExpirySeconds, 2160n * 3600n);
  assert.equal(req.advertiseAddr, "10.0.0.1:4242");
  assert.ok(r.stdout.includes(`shoal join --token ${WORKER_TOKEN} 10.0.0.1:4242`));
  assert.ok(!r.stdout.includes(MANAGER_TOKEN), "init points to join-token manager instead of printing it");
  assert.equal(r.stdout.split(UNLOCK_KEY).length - 1, 1);
});

test("--cert-expiry below 1h and garbage durations are refused before any call (exit 2)", async () => {
  fake.reset();
  const results = await Promise.all([
    runShoal([...sock, "init", "--cert-expiry", "30m"]),
    runShoal([...sock, "join-token", "worker", "--rotate", "--expires-in", "1h30"]),
    runShoal([...sock, "join-token", "worker", "--expires-in", "1h"]),
  ]);
  for (const r of results) assert.equal(r.code, 2, r.stderr);
  assert.match(results[0]!.stderr, /below the minimum of 1h/);
  assert.match(results[1]!.stderr, /"1h30" is not a duration/);
  assert.match(results[2]!.stderr, /add --rotate/);
  assert.deepEqual(fake.calls, []);
});

test("join sends token, address, advertise address and availability", async () => {
  fake.reset({ join: () => ({ nodeId: WORKER, role: NodeRole.NODE_ROLE_WORKER, clusterId: id("clu") }) });
  const r = await runShoal([...sock, "join", "--token", WORKER_TOKEN, "10.0.0.1:4242", "--advertise-addr", "10.0.0.2:4242", "--availability", "drain"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("join"), [
    { token: WORKER_TOKEN, remoteAddr: "10.0.0.1:4242", advertiseAddr: "10.0.0.2:4242", availability: NodeAvailability.NODE_AVAILABILITY_DRAIN },
  ]);
  assert.match(r.stdout, /joined cluster .* as a worker/);
});

test("server errors become one sentence on stderr and a stable exit code per class", async () => {
  const cases: [string[], string, ShoalError, number, RegExp][] = [
    [["node", "ls"], "listNodes", new ShoalError("NOT_MANAGER", "not a manager"), 4, /this node is not a manager: run this command on a manager node/],
    [["secret", "ls"], "listSecrets", new ShoalError("LOCKED", "locked"), 4, /this node is locked: run `shoal unlock`/],
    [["unlock-key"], "getUnlockKey", new ShoalError("NO_QUORUM", "2 of 3 managers unreachable"), 3, /no leader or no quorum.*2 of 3 managers unreachable/],
    [["join-token", "worker"], "getJoinToken", new ShoalError("UNAVAILABLE", "the leader is unknown: retry in a second"), 3, /the leader is unknown: retry in a second/],
  ];
  fake.reset({ ...Object.fromEntries(cases.map(([, method, err]) => [method, () => err])), info });
  const results = await Promise.all(cases.map(([args]) => runShoal([...sock, ...args])));
  for (const [i, [, , err, exitCode, message]] of cases.entries()) {
    const r = results[i]!;
    assert.equal(r.code, exitCode, `${err.code}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /^Error: [^\n]+\n$/, "one sentence on one line");
    assert.equal(r.stdout, "");
  }
});

test("no daemon at the socket: exit 3 naming the socket; SHOAL_SOCKET and --data-dir find the socket", async () => {
  fake.reset({ info });
  const missing = join(fake.dir, "nobody-home.sock");
  const [none, viaEnv, viaDir] = await Promise.all([
    runShoal(["--socket", missing, "info"]),
    runShoal(["info", "--format", "json"], { env: { SHOAL_SOCKET: fake.socketPath } }),
    runShoal(["--data-dir", fake.dir, "info", "--format", "json"]),
  ]);
  assert.equal(none.code, 3);
  assert.equal(none.stderr, `Error: cannot reach the Shoal daemon at ${missing}: is \`shoal daemon\` running?\n`);
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  assert.equal(JSON.parse(viaEnv.stdout).nodeId, SELF);
  assert.equal(viaDir.code, 0, viaDir.stderr);
  assert.equal(fake.callsTo("info").length, 2);
});

test("unlock reads the key from stdin and never prints it, even when it is refused", async () => {
  fake.reset({ unlock: () => ({}) });
  const ok = await runShoal([...sock, "unlock"], { stdin: `${UNLOCK_KEY}\n` });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(fake.callsTo("unlock"), [{ unlockKey: UNLOCK_KEY }]);
  assert.ok(!ok.stdout.includes(UNLOCK_KEY) && !ok.stderr.includes(UNLOCK_KEY));

  fake.reset({ unlock: () => new ShoalError("UNLOCK_KEY_WRONG", "the unlock key is wrong: the node stays locked") });
  const wrong = await runShoal([...sock, "unlock"], { stdin: UNLOCK_KEY });
  assert.equal(wrong.code, 4);
  assert.match(wrong.stderr, /the unlock key is wrong/);
  assert.ok(!wrong.stdout.includes(UNLOCK_KEY) && !wrong.stderr.includes(UNLOCK_KEY));
  assert.ok(!wrong.stderr.includes("SWMKEY"));
});

test("unlock with nothing on stdin is a usage error and sends nothing", async () => {
  fake.reset();
  const r = await runShoal([...sock, "unlock"], { stdin: "" });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no unlock key was given/);
  assert.deepEqual(fake.calls, []);
});

test("secret create NAME - sends stdin's bytes; a file works too; data never printed", async () => {
  const data = Buffer.from("hunter2-top-secret-value\u0000\u00ffbinary");
  fake.reset({ createSecret: (req: any) => ({ secret: { id: id("sec"), spec: { name: req.spec.name, zone: req.spec.zone } } }) });
  const file = join(fake.dir, "secret.bin");
  writeFileSync(file, data);
  const [fromStdin, fromFile] = await Promise.all([
    runShoal([...sock, "secret", "create", "--zone", "pci", "db-pass", "-"], { stdin: data }),
    runShoal([...sock, "secret", "create", "api-key", file]),
  ]);
  for (const r of [fromStdin, fromFile]) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${id("sec")}\n`);
    assert.ok(!r.stdout.includes("hunter2") && !r.stderr.includes("hunter2"));
  }
  const requests = fake.callsTo("createSecret").sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  assert.equal(requests[0].spec.name, "api-key");
  assert.deepEqual(requests[0].spec.data, data);
  assert.equal(requests[1].spec.name, "db-pass");
  assert.equal(requests[1].spec.zone, "pci");
  assert.deepEqual(requests[1].spec.data, data);
});

test("registry login --password-stdin sends the first line of stdin and the CA file; ls and logout; the password is never printed or an argument", async () => {
  const password = "pw-7c41e09ab2";
  fake.reset({
    registryLogin: (req: any) => ({ registry: { registry: req.registry, username: req.username, caPem: req.caPem } }),
    listRegistries: () => ({ registries: [{ registry: "reg.example:5000", username: "dave", password: Buffer.from(password), caPem: "x" }] }),
  });
  const caFile = join(fake.dir, "ca.pem");
  writeFileSync(caFile, "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n");
  const login = await runShoal([...sock, "registry", "login", "reg.example:5000", "-u", "dave", "--password-stdin", "--ca-file", caFile], { stdin: `${password}\nignored\n` });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, /Login to reg\.example:5000 as dave stored on the managers/);
  const [req] = fake.callsTo("registryLogin");
  assert.equal(req.registry, "reg.example:5000");
  assert.equal(req.username, "dave");
  assert.equal(Buffer.from(req.password).toString(), password);
  assert.match(req.caPem, /BEGIN CERTIFICATE/);
  // Even a server that sent a password back would not get it printed.
  for (const args of [["registry", "ls"], ["registry", "ls", "--format", "json"]]) {
    const ls = await runShoal([...sock, ...args]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /reg\.example:5000/);
    assert.ok(!ls.stdout.includes(password) && !ls.stdout.includes(Buffer.from(password).toString("base64")));
  }
  const logout = await runShoal([...sock, "registry", "logout", "reg.example:5000"]);
  assert.equal(logout.code, 0, logout.stderr);
  assert.deepEqual(fake.callsTo("registryLogout"), [{ registry: "reg.example:5000" }]);
  // Not on a terminal and no --password-stdin: a usage error, nothing sent.
  fake.reset();
  const noPassword = await runShoal([...sock, "registry", "login", "reg.example:5000", "-u", "dave"], { stdin: "" });
  assert.equal(noPassword.code, 2);
  assert.match(noPassword.stderr, /--password-stdin/);
  assert.deepEqual(fake.calls, []);
});

test("secret create refuses more than 500 KiB client-side; a missing file is exit 5", async () => {
  fake.reset();
  const [big, missing] = await Promise.all([
    runShoal([...sock, "secret", "create", "huge", "-"], { stdin: Buffer.alloc(500 * 1024 + 1, 0x41) }),
    runShoal([...sock, "secret", "create", "nope", join(fake.dir, "does-not-exist")]),
  ]);
  assert.equal(big.code, 2);
  assert.match(big.stderr, /larger than 500 KiB/);
  assert.ok(!big.stderr.includes("AAAA"));
  assert.equal(missing.code, 5);
  assert.match(missing.stderr, /cannot read secret file/);
  assert.deepEqual(fake.callsTo("createSecret"), []);
});

test("secret create from a directory is a usage error naming the file, not a crash report", async () => {
  fake.reset();
  const r = await runShoal([...sock, "secret", "create", "dir-secret", fake.dir]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^Error: cannot read secret file .* \(EISDIR\): give a readable file, or - to read stdin\n$/);
  assert.ok(!r.stderr.includes("bug in shoal"));
  assert.deepEqual(fake.callsTo("createSecret"), []);
});

test("secret ls --format json never shows data even if the server sent some", async () => {
  fake.reset({
    listSecrets: () => ({
      secrets: [{ id: id("sec"), spec: { name: "db-pass", data: Buffer.from("leaked-bytes"), zone: "pci" }, dataMac: "ab12", sizeBytes: 12 }],
    }),
  });
  const [json, table] = await Promise.all([runShoal([...sock, "secret", "ls", "--format", "json"]), runShoal([...sock, "secret", "ls"])]);
  assert.deepEqual(
    JSON.parse(json.stdout).map((s: { id: string; name: string; zone: string; sizeBytes: number }) => [s.id, s.name, s.zone, s.sizeBytes]),
    [[id("sec"), "db-pass", "pci", 12]],
  );
  for (const r of [json, table]) assert.ok(!r.stdout.includes("leaked") && !r.stdout.includes(Buffer.from("leaked-bytes").toString("base64")));
  assert.match(table.stdout, /^ID +NAME +ZONE +SIZE +CREATED$/m);
});

test("node update: label add/rm and availability, retried on a concurrent version change", async () => {
  fake.reset({
    listNodes: (_req, i) => ({ nodes: nodes(7n + BigInt(i)) }),
    updateNode: (req: any, i) =>
      i === 0 ? new ShoalError("VERSION_CONFLICT", "node version 7 is stale") : { node: { id: req.nodeId, meta: { version: 9n } } },
  });
  const r = await runShoal([...sock, "node", "update", "web-1", "--label-add", "zone=pci", "--label-rm", "old", "--label-add", "tier=db", "--availability", "drain"]);
  assert.equal(r.code, 0, r.stderr);
  const updates = fake.callsTo("updateNode");
  assert.equal(updates.length, 2);
  assert.equal(updates[0].nodeVersion, 7n);
  assert.equal(updates[1].nodeVersion, 8n, "the retry re-reads the node and sends its new version");
  assert.equal(updates[1].nodeId, WORKER);
  assert.deepEqual(updates[1].spec.labels, { keep: "y", zone: "pci", tier: "db" });
  assert.equal(updates[1].spec.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
  assert.equal(updates[1].spec.desiredRole, NodeRole.NODE_ROLE_WORKER);
});

test("node update gives up after repeated conflicts with exit 6", async () => {
  fake.reset({ listNodes: () => ({ nodes: nodes() }), updateNode: () => new ShoalError("VERSION_CONFLICT", "stale version") });
  const r = await runShoal([...sock, "node", "update", WORKER, "--label-add", "zone=pci"]);
  assert.equal(r.code, 6);
  assert.equal(fake.callsTo("updateNode").length, 5);
  assert.match(r.stderr, /kept changing.*retry the command/);
});

test("node ls: docker-style table with * beside this node, and JSON", async () => {
  fake.reset({ listNodes: () => ({ nodes: nodes() }), info });
  const [table, json] = await Promise.all([runShoal([...sock, "node", "ls"]), runShoal([...sock, "node", "ls", "--format", "json"])]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split("\n");
  assert.match(lines[0]!, /^ID +HOSTNAME +STATUS +AVAILABILITY +MANAGER STATUS$/);
  assert.match(lines[1]!, new RegExp(`^${SELF} \\* +mgr-1 +Ready +Active +Leader$`));
  assert.match(lines[2]!, new RegExp(`^${WORKER} +web-1 +Down +Active$`));
  const parsed = JSON.parse(json.stdout);
  assert.deepEqual(
    parsed.map((n: { id: string; self: boolean; role: string; managerStatus: string; zone: string }) => [n.id, n.self, n.role, n.managerStatus, n.zone]),
    [
      [SELF, true, "manager", "leader", "default"],
      [WORKER, false, "worker", "", "default"],
    ],
  );
});

test("node names resolve by hostname or unique ID prefix; ambiguity and absence are errors", async () => {
  const third = { ...nodes()[1]!, id: id("wrk2"), description: { hostname: "web-2" } };
  fake.reset({
    listNodes: () => ({ nodes: [...nodes(), third] }),
    updateNode: (req: any) => ({ node: { id: req.nodeId } }),
    removeNode: () => ({}),
  });
  const [promote, rm, ambiguous, absent] = await Promise.all([
    runShoal([...sock, "node", "promote", "web-1"]),
    runShoal([...sock, "node", "rm", "--force", "wrk1"]),
    runShoal([...sock, "node", "inspect", "wrk"]),
    runShoal([...sock, "node", "demote", "db-9"]),
  ]);
  assert.equal(promote.code, 0, promote.stderr);
  assert.equal(fake.callsTo("updateNode")[0].nodeId, WORKER);
  assert.equal(fake.callsTo("updateNode")[0].spec.desiredRole, NodeRole.NODE_ROLE_MANAGER);
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual(fake.callsTo("removeNode"), [{ nodeId: WORKER, force: true }]);
  assert.equal(ambiguous.code, 2);
  assert.match(ambiguous.stderr, /2 nodes have IDs starting with wrk: give more characters of the ID/);
  assert.equal(absent.code, 5);
  assert.match(absent.stderr, /no node matches db-9: list nodes with `shoal node ls`/);
});

test("service create maps every flag and the command after --", async () => {
  fake.reset({
    listSecrets: () => ({ secrets: [{ id: id("sec"), spec: { name: "db-pass" } }] }),
    createService: () => ({ service: { id: id("svc") } }),
  });
  const r = await runShoal([
    ...sock, "service", "create", "--name", "web", "--replicas", "3", "--constraint", "node.labels.tier==front",
    "--constraint", "node.role==worker", "--zone", "pci", "--secret", "db-pass", "--image", "registry/web:1",
    "--", "sh", "-c", "echo --name hi",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${id("svc")}\n`);
  const [req] = fake.callsTo("createService");
  assert.equal(req.spec.name, "web");
  assert.equal(req.spec.replicas, 3);
  assert.deepEqual(req.spec.constraints, ["node.labels.tier==front", "node.role==worker"]);
  assert.equal(req.spec.zone, "pci");
  assert.equal(req.spec.container.image, "registry/web:1");
  assert.deepEqual(req.spec.container.command, ["sh"]);
  assert.deepEqual(req.spec.container.args, ["-c", "echo --name hi"]);
  assert.deepEqual(req.spec.container.secrets, [{ secretId: id("sec"), secretName: "db-pass", target: "db-pass" }]);
});

test("service scale, ls and ps", async () => {
  const service = { id: id("svc"), meta: { version: 4n }, spec: { name: "web", replicas: 3, container: { command: ["sleep"], args: ["60"] } } };
  fake.reset({
    listServices: () => ({ services: [service] }),
    updateService: (req: any) => ({ service: { ...service, spec: req.spec } }),
    listNodes: () => ({ nodes: nodes() }),
    listTasks: () => ({
      tasks: [
        { id: id("t1"), serviceId: id("svc"), serviceName: "web", slot: 1, nodeId: WORKER, desiredState: TaskState.TASK_STATE_RUNNING, status: { state: TaskState.TASK_STATE_RUNNING } },
        { id: id("t2"), serviceId: id("svc"), serviceName: "web", slot: 2, nodeId: "", desiredState: TaskState.TASK_STATE_RUNNING, status: { state: TaskState.TASK_STATE_PENDING, err: "no suitable node" } },
      ],
    }),
  });
  const [scale, ls, ps] = await Promise.all([
    runShoal([...sock, "service", "scale", "web=5"]),
    runShoal([...sock, "service", "ls", "--format", "json"]),
    runShoal([...sock, "service", "ps", "web"]),
  ]);
  assert.equal(scale.code, 0, scale.stderr);
  const [update] = fake.callsTo("updateService");
  assert.equal(update.serviceId, id("svc"));
  assert.equal(update.serviceVersion, 4n);
  assert.equal(update.spec.replicas, 5);
  assert.deepEqual(update.spec.container.args, ["60"], "the rest of the spec is kept");
  const listed = JSON.parse(ls.stdout);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].name, "web");
  assert.equal(listed[0].replicas, 3);
  assert.equal(listed[0].runningTasks, 1);
  assert.match(ps.stdout, /^ID +NAME +IMAGE +NODE +ZONE +NETWORK +DESIRED STATE +CURRENT STATE +ERROR$/m);
  assert.match(ps.stdout, new RegExp(`^${id("t1").slice(0, 12)} +web\\.1 +\\(process\\) +web-1 +default +isolated +Running +Running$`, "m"));
  assert.match(ps.stdout, /web\.2 +\(process\) +default +isolated +Running +Pending +no suitable node$/m);
});

test("update --autolock=false --cert-expiry 48h sends a compare-and-set UpdateCluster", async () => {
  fake.reset({ getCluster: () => ({ cluster: { id: id("clu"), meta: { version: 12n } } }), updateCluster: () => ({}) });
  const r = await runShoal([...sock, "update", "--autolock=false", "--cert-expiry", "48h"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("updateCluster"), [
    { clusterVersion: 12n, nodeCertExpirySeconds: 48n * 3600n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_OFF, updateExternalCa: false, externalCa: undefined },
  ]);
});

test("usage errors exit 2 without calling the daemon", async () => {
  fake.reset();
  const results = await Promise.all([
    runShoal([...sock, "frobnicate"]),
    runShoal([...sock, "node", "inspect"]),
    runShoal([...sock, "service", "create", "--", "sleep", "1"]),
    runShoal([...sock, "node", "update", "web-1", "--availability", "sideways"]),
    runShoal([...sock, "join", "--token", "not-a-token-value", "10.0.0.1:4242"]),
  ]);
  for (const r of results) assert.equal(r.code, 2, r.stderr);
  assert.match(results[0]!.stderr, /unknown command 'frobnicate'/);
  assert.match(results[1]!.stderr, /missing required argument/);
  assert.match(results[2]!.stderr, /--name/);
  assert.match(results[3]!.stderr, /argument 'sideways' is invalid/);
  assert.ok(!results[4]!.stderr.includes("not-a-token-value"), "a bad token is not echoed");
  assert.deepEqual(fake.calls, []);
});

test("unlock on a terminal prompts without echo and sends the typed key", async (t) => {
  // util-linux `script` gives the CLI a real pseudo-terminal; without it this path cannot run here.
  const script = spawnSync("script", ["--version"]);
  if (script.error !== undefined) {
    t.skip("`script` (util-linux) is not installed");
    return;
  }
  fake.reset({ unlock: () => ({}) });
  const bin = join(import.meta.dirname, "../../bin/shoal.js");
  const child = spawn("script", ["-qec", `${process.execPath} ${bin} --socket ${fake.socketPath} unlock`, "/dev/null"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  const typed = new Promise<void>((res) => {
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
      if (output.includes("Enter unlock key: ")) res();
    });
  });
  const closed = new Promise<number | null>((res) => child.on("close", res));
  await typed;
  child.stdin.write(`${UNLOCK_KEY}\r`);
  const code = await closed;
  assert.equal(code, 0, output);
  assert.deepEqual(fake.callsTo("unlock"), [{ unlockKey: UNLOCK_KEY }]);
  assert.match(output, /Node unlocked\./);
  assert.ok(!output.includes(UNLOCK_KEY), "the typed key is not echoed");
});
