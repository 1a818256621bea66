// The runc executor's config.json (DESIGN.md §7 least privilege): never privileged, Docker's default
// capabilities minus cap_drop plus cap_add, noNewPrivileges, runc's masked and read-only paths, its
// own network namespace unless host networking, limits as cgroup resources, and Docker's rule for
// merging the service's command/args/env with the image's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { buildOciConfig, DEFAULT_CAPABILITIES, effectiveCapabilities, mergeEnv, processArgs, resolveUser } from "../../src/agent/executor/runc/oci-config.js";
import { ContainerSpec, NetworkMode } from "../../src/proto/shoal/v1/objects.js";

const image = { entrypoint: ["/entry"], cmd: ["serve"], env: ["PATH=/bin", "A=1"], workingDir: "/app", user: "" };

function config(spec: Partial<ContainerSpec>, secretsDir?: string): any {
  return buildOciConfig({ taskId: "t".repeat(25), spec: ContainerSpec.fromPartial({ image: "r/i", imageDigest: "sha256:x", ...spec }), image, rootfsPath: "/b/rootfs", cgroupsPath: "/shoal/t", secretsDir, uid: 0, gid: 0, additionalGids: [] });
}

test("defaults: no new privileges, Docker's capabilities, masked paths, own network namespace, no terminal", () => {
  const c = config({});
  assert.equal(c.process.terminal, false);
  assert.equal(c.process.noNewPrivileges, true);
  assert.deepEqual(c.process.capabilities.bounding, [...DEFAULT_CAPABILITIES]);
  assert.ok(!c.process.capabilities.bounding.includes("CAP_SYS_ADMIN"));
  assert.deepEqual(c.process.capabilities.ambient, []);
  assert.ok(c.linux.maskedPaths.includes("/proc/kcore") && c.linux.readonlyPaths.includes("/proc/sys"));
  assert.ok(c.linux.namespaces.some((n: { type: string }) => n.type === "network"));
  assert.equal(c.root.path, "/b/rootfs");
  assert.equal(c.root.readonly, false);
  assert.equal(c.linux.cgroupsPath, "/shoal/t");
  assert.deepEqual(c.process.args, ["/entry", "serve"]);
  assert.equal(c.process.cwd, "/app");
  assert.equal(c.mounts.some((m: { destination: string }) => m.destination === "/run/secrets"), false);
});

test("host network, read-only root, limits and secrets mount", () => {
  const c = config({ network: NetworkMode.NETWORK_MODE_HOST, readOnly: true, limits: { memoryBytes: 64n << 20n, nanoCpus: 500_000_000n, pids: 50n } }, "/dev/shm/shoal/t/secrets");
  assert.ok(!c.linux.namespaces.some((n: { type: string }) => n.type === "network"));
  assert.equal(c.root.readonly, true);
  assert.equal(c.linux.resources.memory.limit, 64 * 1024 * 1024);
  assert.deepEqual(c.linux.resources.cpu, { quota: 50_000, period: 100_000 });
  assert.deepEqual(c.linux.resources.pids, { limit: 50 });
  const secrets = c.mounts.find((m: { destination: string }) => m.destination === "/run/secrets");
  assert.equal(secrets.source, "/dev/shm/shoal/t/secrets");
  assert.ok(secrets.options.includes("ro"));
});

test("capabilities: drop, add, drop ALL; ALL and unknown names refused", () => {
  assert.ok(!effectiveCapabilities([], ["net_raw"]).includes("CAP_NET_RAW"));
  assert.ok(effectiveCapabilities(["NET_ADMIN"], []).includes("CAP_NET_ADMIN"));
  assert.deepEqual(effectiveCapabilities(["CAP_KILL"], ["ALL"]), ["CAP_KILL"]);
  assert.throws(() => effectiveCapabilities(["ALL"], []), (e) => isShoalError(e, "INVALID_ARGUMENT") && /privileged/.test(e.message));
  assert.throws(() => effectiveCapabilities(["CAP_MAGIC"], []), (e) => isShoalError(e, "INVALID_ARGUMENT"));
});

test("command, args, env and user merge as Docker does", () => {
  assert.deepEqual(processArgs({ command: [], args: [] }, image), ["/entry", "serve"]);
  assert.deepEqual(processArgs({ command: [], args: ["x"] }, image), ["/entry", "x"]);
  assert.deepEqual(processArgs({ command: ["sh"], args: [] }, image), ["sh"], "a command drops the image's cmd");
  assert.deepEqual(processArgs({ command: ["sh"], args: ["-c", "true"] }, image), ["sh", "-c", "true"]);
  assert.throws(() => processArgs({ command: [], args: [] }, { entrypoint: [], cmd: [] }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.deepEqual(mergeEnv(["PATH=/bin", "A=1"], ["A=2", "B=3"]), ["PATH=/bin", "A=2", "B=3"]);
  assert.ok(mergeEnv([], [])[0]!.startsWith("PATH="));
  const passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
  assert.deepEqual(resolveUser("app", passwd, "staff:x:50:\n"), { uid: 1000, gid: 1001, additionalGids: [] });
  assert.deepEqual(resolveUser("1000:staff", passwd, "staff:x:50:\n"), { uid: 1000, gid: 50, additionalGids: [] });
  assert.deepEqual(resolveUser("2000", passwd, undefined), { uid: 2000, gid: 2000, additionalGids: [] });
  assert.throws(() => resolveUser("nobody", passwd, undefined), (e) => isShoalError(e, "INVALID_ARGUMENT"));
});
