// The CLI against a real one-manager daemon (its control socket, raft, the encrypted store): what
// the CLI builds from its flags is what the server accepts, the server's refusals reach the user as
// one sentence with the exit code of their class, and the whole service life (create, inspect,
// update, rollback, rm) reads back as it was written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { runCli } from "../../src/cli/program.js";
import { singleManager } from "../manager/single-manager.js";
import { waitFor } from "../e2e/cluster.js";

test("CLI + real manager: workload flags round-trip, the zone-secret rule, rollback and rm", async (t) => {
  const { daemon } = await singleManager(t, "shoal-cli-manager-");
  const shoal = async (args: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> => {
    let stdout = "";
    let stderr = "";
    const code = await runCli(["--socket", daemon.socketPath, ...args], {
      stdout: (s) => (stdout += s),
      stderr: (s) => (stderr += s),
      stdin: Readable.from([Buffer.from(stdin)]),
      env: {},
    });
    return { code, stdout, stderr };
  };
  const ok = async (args: string[], stdin?: string): Promise<string> => {
    const r = await shoal(args, stdin);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const PASSWORD = "zone-a-only-pa55word";
  await ok(["secret", "create", "--zone", "a", "sa", "-"], PASSWORD);
  await ok(["secret", "create", "plain", "-"], "p");

  // The zone rule, from the CLI: create in another zone, in the default zone, and --secret-add.
  for (const zoneFlags of [["--zone", "b"], []]) {
    const r = await shoal(["service", "create", "--name", `bad${zoneFlags.length}`, ...zoneFlags, "--secret", "sa", "--", "sleep", "1"]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /secret "sa" belongs to zone "a" and cannot be attached to a service of zone "(b|default)"/);
  }
  await ok(["service", "create", "--name", "inb", "--zone", "b", "--secret", "plain", "--", "sleep", "1"]);
  const add = await shoal(["service", "update", "inb", "--secret-add", "sa"]);
  assert.equal(add.code, 4, add.stderr);
  assert.match(add.stderr, /belongs to zone "a"/);

  // Every flag the CLI takes produces a spec the server stores as given.
  const created = await shoal([
    "service", "create", "--name", "web", "--zone", "a", "--replicas", "2", "--secret", "sa,target=pw",
    "--image", "127.0.0.1:5000/web:1", "--constraint", "engine.labels.disk==ssd", "--env", "A=1", "--workdir", "/srv",
    "--user", "1000:1000", "--read-only", "--cap-drop", "ALL", "--cap-add", "net_bind_service", "--network", "host",
    "--limit-memory", "64M", "--limit-cpu", "0.25", "--limit-pids", "32", "--restart-condition", "on-failure",
    "--restart-delay", "2s", "--restart-max-attempts", "4", "--restart-window", "2m", "--update-parallelism", "1",
    "--update-delay", "1s", "--update-failure-action", "rollback", "--update-monitor", "3s", "--update-max-failure-ratio", "0.5",
    "--rollback-failure-action", "continue", "--stop-grace-period", "15s",
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stderr, /uses the host's network/);
  const inspected = JSON.parse(await ok(["service", "inspect", "web"]));
  assert.equal(inspected.spec.network, "host");
  assert.deepEqual(inspected.spec.limits, { memoryBytes: 64 * 1024 * 1024, cpus: "0.25", pids: 32 });
  assert.deepEqual(inspected.spec.capAdd, ["CAP_NET_BIND_SERVICE"]);
  assert.deepEqual(inspected.spec.capDrop, ["ALL"]);
  assert.deepEqual(inspected.spec.restartPolicy, { condition: "on-failure", delay: "2s", maxAttempts: 4, window: "2m" });
  assert.deepEqual(inspected.spec.updateConfig, { parallelism: 1, delay: "1s", failureAction: "rollback", monitor: "3s", maxFailureRatio: 0.5 });
  assert.equal(inspected.spec.rollbackConfig.failureAction, "continue");
  assert.equal(inspected.spec.stopGracePeriod, "15s");
  assert.deepEqual(inspected.spec.secrets.map((s: { target: string }) => s.target), ["pw"]);
  assert.equal(inspected.previousSpec, null);

  // Rollback without a previous spec: refused (exit 6). After an update it returns to the old spec.
  const early = await shoal(["service", "rollback", "web"]);
  assert.equal(early.code, 6, early.stderr);
  assert.match(early.stderr, /no previous spec to roll back to/);
  await ok(["service", "update", "web", "--image", "127.0.0.1:5000/web:2", "--network", "none"]);
  const updated = JSON.parse(await ok(["service", "inspect", "web"]));
  assert.equal(updated.spec.image, "127.0.0.1:5000/web:2");
  assert.equal(updated.spec.network, "isolated");
  assert.equal(updated.previousSpec.image, "127.0.0.1:5000/web:1");
  await ok(["service", "rollback", "web"]);
  const rolled = JSON.parse(await ok(["service", "inspect", "web"]));
  assert.equal(rolled.spec.image, "127.0.0.1:5000/web:1");
  assert.equal(rolled.spec.network, "host");
  // The orchestrator may already have rolled it out (the service runs no task).
  assert.ok(["rollback-started", "rollback-completed"].includes(rolled.updateStatus.state), rolled.updateStatus.state);

  // No output of any of these commands carried the secret's bytes.
  const reads = await Promise.all([["secret", "inspect", "sa"], ["secret", "ls", "--format", "json"], ["service", "inspect", "web"], ["service", "ps", "web"], ["node", "ps"]].map((a) => shoal(a)));
  for (const r of reads) {
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!(r.stdout + r.stderr).includes(PASSWORD));
  }
  assert.match(JSON.parse(reads[0]!.stdout).dataMac, /^[0-9a-f]{64}$/);

  // rm: the service is marked and, as it runs no task, deleted by the orchestrator; then its secret
  // can go. (The "(removing)" row and the in-use refusal while tasks stop are in views.test.ts and
  // test/manager/orchestrator-replicated.test.ts.)
  await ok(["service", "rm", "web"]);
  await waitFor("web to be deleted", async () => (JSON.parse(await ok(["service", "ls", "--format", "json"])).some((s: { name: string }) => s.name === "web") ? undefined : true), 20_000);
  await ok(["secret", "rm", "sa"]);
});
