// Every workload flag of `service create` / `service update`, good values and bad: a good value
// becomes the right request field (checked on what a fake daemon on a real unix socket received),
// a bad one is exit 2 with a sentence naming the flag and no call to the daemon at all. Runs the
// CLI in this process (runCli), so no child process is needed.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { isShoalError } from "../../src/base/errors.js";
import { parseDurationMs } from "../../src/cli/duration.js";
import { runCli } from "../../src/cli/program.js";
import {
  parseFailureAction,
  parseFailureRatio,
  parseMemoryBytes,
  parseNanoCpus,
  parseNetwork,
  parseSecretFlag,
  parseUser,
} from "../../src/cli/service-flags.js";
import { NetworkMode, RestartCondition, ServiceMode, UpdateFailureAction } from "../../src/proto/shoal/v1/objects.js";
import { FakeDaemon } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
let fake: FakeDaemon;

before(async () => {
  fake = await FakeDaemon.start();
});
after(async () => {
  await fake.stop();
});

async function shoal(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["--socket", fake.socketPath, ...args], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    stdin: Readable.from([]),
    env: {},
  });
  return { code, stdout, stderr };
}

const invalid = (err: unknown): boolean => isShoalError(err, "INVALID_ARGUMENT");

test("memory, CPU and duration values as Docker writes them", () => {
  const mem: [string, bigint][] = [["256M", 256n << 20n], ["256m", 256n << 20n], ["1g", 1n << 30n], ["1.5G", 3n << 29n], ["64MiB", 64n << 20n], ["64MB", 64n << 20n], ["6291456", 6291456n], ["8192k", 8n << 20n], ["0", 0n]];
  for (const [text, bytes] of mem) assert.equal(parseMemoryBytes(text), bytes, text);
  for (const text of ["", "M", "-1M", "1x", "5M" /* below 6 MiB */, "2P", "1e9", "256 M M"]) assert.throws(() => parseMemoryBytes(text), invalid, text);

  const cpu: [string, bigint][] = [["0.5", 500_000_000n], ["1", 1_000_000_000n], ["2.25", 2_250_000_000n], ["0.01", 10_000_000n], ["0", 0n], ["1024", 1024n * 1_000_000_000n]];
  for (const [text, nano] of cpu) assert.equal(parseNanoCpus(text), nano, text);
  for (const text of ["", ".5", "-1", "0.001", "1025", "1.0000000001", "half", "1e3"]) assert.throws(() => parseNanoCpus(text), invalid, text);

  const durations: [string, bigint][] = [["5s", 5000n], ["1m", 60_000n], ["1m30s", 90_000n], ["500ms", 500n], ["1.5h", 5_400_000n], ["0", 0n], ["0s", 0n], ["2h3m4s5ms", 7_384_005n]];
  for (const [text, ms] of durations) assert.equal(parseDurationMs(text, "--restart-delay"), ms, text);
  for (const text of ["", "5", "5 s", "-5s", "1d", "s", "1.0001ms", "5sec"]) {
    assert.throws(() => parseDurationMs(text, "--restart-delay"), (err: unknown) => invalid(err) && /--restart-delay/.test((err as Error).message), text);
  }
});

test("user, network, failure actions, ratios, secrets", () => {
  for (const good of ["0", "1000", "1000:1000", "4294967294:0"]) assert.equal(parseUser(good), good);
  for (const bad of ["root", "1000:", ":1", "1:2:3", "4294967295", "-1", " 1"]) assert.throws(() => parseUser(bad), invalid, bad);
  assert.equal(parseNetwork("host"), NetworkMode.NETWORK_MODE_HOST);
  for (const isolated of ["none", "default", "isolated"]) assert.equal(parseNetwork(isolated), NetworkMode.NETWORK_MODE_ISOLATED);
  assert.throws(() => parseNetwork("overlay1"), /overlay networks are out of scope/);
  assert.throws(() => parseNetwork("bridge"), invalid);
  assert.equal(parseFailureAction("rollback", "--update-failure-action"), UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK);
  assert.equal(parseFailureAction("continue", "--rollback-failure-action"), UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE);
  assert.throws(() => parseFailureAction("rollback", "--rollback-failure-action"), /not pause or continue/);
  assert.throws(() => parseFailureAction("retry", "--update-failure-action"), /not pause, rollback or continue/);
  assert.equal(parseFailureRatio("0.2", "--update-max-failure-ratio"), 0.2);
  assert.equal(parseFailureRatio("1", "--update-max-failure-ratio"), 1);
  for (const bad of ["1.1", "-0.1", "NaN", "", "1/2", "Infinity"]) assert.throws(() => parseFailureRatio(bad, "--update-max-failure-ratio"), invalid, bad);
  assert.deepEqual(parseSecretFlag("db"), { source: "db", target: "db" });
  assert.deepEqual(parseSecretFlag("db,target=pw"), { source: "db", target: "pw" });
  assert.deepEqual(parseSecretFlag("source=db,target=pw"), { source: "db", target: "pw" });
  assert.deepEqual(parseSecretFlag("src=db"), { source: "db", target: "db" });
  for (const bad of ["", "db,target=../x", "db,target=a/b", "db,target=..", "db,mode=0400", "db,uid=0", "db,target", "target=x"]) {
    assert.throws(() => parseSecretFlag(bad), invalid, bad);
  }
});

test("service create: every workload flag lands in the request", async () => {
  fake.reset({
    listSecrets: () => ({ secrets: [{ id: id("sec1"), spec: { name: "db" } }, { id: id("sec2"), spec: { name: "tls" } }] }),
    createService: () => ({ service: { id: id("svc") } }),
  });
  const r = await shoal([
    "service", "create", "--name", "web", "--replicas", "4", "--zone", "a",
    "--constraint", "node.labels.tier==front", "--constraint", "engine.labels.disk==ssd",
    "--secret", "db", "--secret", "tls,target=cert.pem", "--image", "127.0.0.1:5000/web:1",
    "--env", "A=1", "--env", "B=x=y", "--workdir", "/srv", "--user", "1000:1000", "--read-only",
    "--cap-add", "net_bind_service", "--cap-drop", "ALL", "--network", "host",
    "--limit-memory", "256M", "--limit-cpu", "0.5", "--limit-pids", "64",
    "--restart-condition", "on-failure", "--restart-delay", "5s", "--restart-max-attempts", "3", "--restart-window", "1m",
    "--update-parallelism", "2", "--update-delay", "10s", "--update-failure-action", "rollback", "--update-monitor", "30s", "--update-max-failure-ratio", "0.25",
    "--rollback-parallelism", "1", "--rollback-delay", "1s", "--rollback-failure-action", "continue", "--rollback-monitor", "5s", "--rollback-max-failure-ratio", "0.5",
    "--stop-grace-period", "30s", "--label", "team=web",
    "--", "sh", "-c", "echo hi",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${id("svc")}\n`);
  assert.match(r.stderr, /uses the host's network: its tasks are not network-isolated/);
  const [req] = fake.callsTo("createService");
  const spec = req.spec;
  assert.equal(spec.name, "web");
  assert.equal(spec.mode, ServiceMode.SERVICE_MODE_REPLICATED);
  assert.equal(spec.replicas, 4);
  assert.equal(spec.zone, "a");
  assert.deepEqual(spec.labels, { team: "web" });
  assert.deepEqual(spec.constraints, ["node.labels.tier==front", "engine.labels.disk==ssd"]);
  const c = spec.container;
  assert.equal(c.image, "127.0.0.1:5000/web:1");
  assert.deepEqual([c.command, c.args], [["sh"], ["-c", "echo hi"]]);
  assert.deepEqual(c.env, ["A=1", "B=x=y"]);
  assert.deepEqual(c.secrets, [
    { secretId: id("sec1"), secretName: "db", target: "db" },
    { secretId: id("sec2"), secretName: "tls", target: "cert.pem" },
  ]);
  assert.equal(c.dir, "/srv");
  assert.equal(c.user, "1000:1000");
  assert.equal(c.readOnly, true);
  assert.deepEqual(c.capAdd, ["CAP_NET_BIND_SERVICE"]);
  assert.deepEqual(c.capDrop, ["ALL"]);
  assert.equal(c.network, NetworkMode.NETWORK_MODE_HOST);
  assert.deepEqual(c.limits, { memoryBytes: 256n << 20n, nanoCpus: 500_000_000n, pids: 64n });
  assert.equal(c.stopGracePeriodMs, 30_000n);
  assert.equal(c.imageDigest, "", "the digest is the leader's to resolve");
  assert.deepEqual(spec.restartPolicy, { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE, delayMs: 5000n, maxAttempts: 3, windowMs: 60_000n });
  assert.deepEqual(spec.updateConfig, { parallelism: 2, delayMs: 10_000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, monitorMs: 30_000n, maxFailureRatio: 0.25 });
  assert.deepEqual(spec.rollbackConfig, { parallelism: 1, delayMs: 1000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE, monitorMs: 5000n, maxFailureRatio: 0.5 });
});

test("service create: defaults (1 replica, isolated network, no limits) and --mode global", async () => {
  fake.reset({ createService: () => ({ service: { id: id("svc") } }) });
  const plain = await shoal(["service", "create", "--name", "p", "--", "sleep", "100"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stderr, "", "no host-network note without --network host");
  const global = await shoal(["service", "create", "--name", "g", "--mode", "global", "--image", "127.0.0.1:5000/agent:1"]);
  assert.equal(global.code, 0, global.stderr);
  const [p, g] = fake.callsTo("createService");
  assert.equal(p.spec.replicas, 1);
  assert.equal(p.spec.container.network, NetworkMode.NETWORK_MODE_ISOLATED);
  assert.equal(p.spec.container.image, "", "no --image: a process task");
  assert.equal(p.spec.container.limits, undefined);
  assert.equal(p.spec.restartPolicy, undefined, "unset: the orchestrator's defaults apply");
  assert.equal(g.spec.mode, ServiceMode.SERVICE_MODE_GLOBAL);
  assert.equal(g.spec.replicas, 0);
});

test("service create: each bad value is exit 2 naming the flag, and the daemon is never called", async () => {
  const base = ["service", "create", "--name", "web"];
  const cases: [string[], RegExp][] = [
    [["--replicas", "-1"], /replicas/],
    [["--replicas", "1.5"], /replicas/],
    [["--mode", "daemonset"], /--mode "daemonset" is not replicated or global/],
    [["--mode", "global", "--replicas", "2"], /--replicas applies only to replicated services/],
    [["--limit-memory", "lots"], /--limit-memory/],
    [["--limit-memory", "1M"], /at least 6 MiB/],
    [["--limit-cpu", "0.001"], /--limit-cpu/],
    [["--limit-pids", "-3"], /--limit-pids/],
    [["--restart-condition", "always"], /--restart-condition "always" is not none, on-failure or any/],
    [["--restart-delay", "5"], /--restart-delay "5" is not a duration/],
    [["--restart-max-attempts", "x"], /--restart-max-attempts/],
    [["--restart-window", "1w"], /--restart-window/],
    [["--update-parallelism", "-1"], /--update-parallelism/],
    [["--update-delay", "soon"], /--update-delay/],
    [["--update-failure-action", "explode"], /--update-failure-action/],
    [["--update-monitor", "1y"], /--update-monitor/],
    [["--update-max-failure-ratio", "2"], /--update-max-failure-ratio/],
    [["--rollback-parallelism", "many"], /--rollback-parallelism/],
    [["--rollback-delay", "-1s"], /--rollback-delay/],
    [["--rollback-failure-action", "rollback"], /--rollback-failure-action "rollback" is not pause or continue/],
    [["--rollback-monitor", "x"], /--rollback-monitor/],
    [["--rollback-max-failure-ratio", "-0.5"], /--rollback-max-failure-ratio/],
    [["--stop-grace-period", "10"], /--stop-grace-period/],
    [["--network", "overlay"], /overlay networks are out of scope/],
    [["--user", "nobody"], /--user "nobody" is not UID or UID:GID/],
    [["--workdir", "relative/dir"], /--workdir "relative\/dir" is not an absolute path/],
    [["--cap-add", "ALL"], /never runs privileged/],
    [["--cap-add", "CAP_FLY"], /--cap-add "CAP_FLY" is not a Linux capability/],
    [["--cap-drop", "nope"], /--cap-drop/],
    [["--cap-add", "NET_ADMIN", "--cap-drop", "net_admin"], /both name CAP_NET_ADMIN/],
    [["--env", "NOEQUALS"], /--env "NOEQUALS" is not NAME=VALUE/],
    [["--secret", "db,target=../../etc/passwd"], /plain file name/],
    [["--label", "=x"], /--label/],
    [["--constraint", "node.colour==red"], /constraint "node.colour==red" is invalid: unknown attribute/],
    [["--constraint", "engine.labels.disk"], /no == or != operator/],
    [["--zone", "-a"], /--zone "-a" is not a zone name/],
  ];
  for (const [flags, pattern] of cases) {
    fake.reset();
    const r = await shoal([...base, ...flags, "--", "true"]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, pattern, flags.join(" "));
    assert.deepEqual(fake.calls, [], `${flags.join(" ")}: no call reached the daemon`);
  }
  // Without a command and without an image there is nothing to run.
  fake.reset();
  const nothing = await shoal(base);
  assert.equal(nothing.code, 2);
  assert.match(nothing.stderr, /nothing to run/);
});

test("service update: the same flags plus add/rm lists change only what they name", async () => {
  const current = {
    id: id("svc"),
    meta: { version: 9n },
    spec: {
      name: "web",
      replicas: 2,
      constraints: ["node.role==worker"],
      container: {
        image: "127.0.0.1:5000/web:1",
        env: ["KEEP=1", "DROP=2", "REPLACE=old"],
        secrets: [{ secretId: id("sec1"), secretName: "db", target: "db" }],
        capAdd: ["CAP_NET_ADMIN"],
        capDrop: ["CAP_NET_RAW"],
        readOnly: true,
        limits: { memoryBytes: 64n << 20n, nanoCpus: 0n, pids: 10n },
      },
      restartPolicy: { condition: RestartCondition.RESTART_CONDITION_NONE, delayMs: 1000n, maxAttempts: 1, windowMs: 0n },
    },
  };
  fake.reset({
    listServices: () => ({ services: [current] }),
    listSecrets: () => ({ secrets: [{ id: id("sec1"), spec: { name: "db" } }, { id: id("sec2"), spec: { name: "tls" } }] }),
    updateService: (req: any) => ({ service: { ...current, spec: req.spec } }),
  });
  const r = await shoal([
    "service", "update", "web", "--image", "127.0.0.1:5000/web:2", "--replicas", "5",
    "--env-add", "REPLACE=new", "--env-add", "ADDED=1", "--env-rm", "DROP",
    "--secret-add", "tls,target=cert.pem", "--secret-rm", "db",
    "--constraint-add", "engine.labels.disk==ssd", "--constraint-rm", "node.role==worker",
    "--cap-add", "NET_RAW", "--cap-drop", "NET_ADMIN", "--no-read-only",
    "--limit-memory", "0", "--limit-cpu", "1.5", "--restart-delay", "2s",
    "--update-failure-action", "rollback",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [req] = fake.callsTo("updateService");
  assert.equal(req.serviceVersion, 9n, "a compare-and-set on the version read");
  assert.equal(req.rollback, false);
  const c = req.spec.container;
  assert.equal(c.image, "127.0.0.1:5000/web:2");
  assert.equal(req.spec.replicas, 5);
  assert.deepEqual(c.env, ["KEEP=1", "REPLACE=new", "ADDED=1"]);
  assert.deepEqual(c.secrets, [{ secretId: id("sec2"), secretName: "tls", target: "cert.pem" }]);
  assert.deepEqual(req.spec.constraints, ["engine.labels.disk==ssd"]);
  assert.deepEqual(c.capAdd, ["CAP_NET_RAW"], "adding a dropped capability un-drops it, as in Docker");
  assert.deepEqual(c.capDrop, ["CAP_NET_ADMIN"]);
  assert.equal(c.readOnly, false);
  assert.deepEqual(c.limits, { memoryBytes: 0n, nanoCpus: 1_500_000_000n, pids: 10n }, "only the named limits change");
  assert.deepEqual(req.spec.restartPolicy, { condition: RestartCondition.RESTART_CONDITION_NONE, delayMs: 2000n, maxAttempts: 1, windowMs: 0n });
  assert.equal(req.spec.updateConfig.failureAction, UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK);

  // Nothing named: a usage error before any call. A bad value: the same.
  for (const [args, pattern] of [[["service", "update", "web"], /nothing to update/], [["service", "update", "web", "--limit-cpu", "lots"], /--limit-cpu/], [["service", "update", "web", "--constraint-add", "node.role==boss"], /node.role must be manager or worker/], [["service", "update", "web", "--mode", "global"], /unknown option '--mode'/]] as const) {
    fake.reset();
    const bad = await shoal([...args]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, pattern);
    assert.deepEqual(fake.calls, []);
  }
});

test("service update --replicas and scale refuse a global service; rollback sends rollback=true", async () => {
  const global = { id: id("glob"), meta: { version: 3n }, spec: { name: "agent", mode: ServiceMode.SERVICE_MODE_GLOBAL, container: { command: ["a"] } } };
  fake.reset({ listServices: () => ({ services: [global] }), updateService: (req: any) => ({ service: { ...global, spec: req.spec ?? global.spec } }) });
  for (const args of [["service", "update", "agent", "--replicas", "3"], ["service", "scale", "agent=3"]]) {
    const r = await shoal(args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /global/);
  }
  assert.deepEqual(fake.callsTo("updateService"), []);
  const rb = await shoal(["service", "rollback", "agent"]);
  assert.equal(rb.code, 0, rb.stderr);
  assert.deepEqual(fake.callsTo("updateService"), [{ serviceId: id("glob"), serviceVersion: 3n, spec: undefined, rollback: true }]);
});

test("service create --help says overlay networks and published ports are out of scope", async () => {
  fake.reset();
  const r = await shoal(["service", "create", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout.replace(/\s+/g, " "), /Overlay networks and published ports are out of scope/);
  assert.match(r.stdout, /--network <mode>/);
  assert.deepEqual(fake.calls, []);
});
