// The container-tools installer's refusal path: a non-root process that lacks the tools is told
// exactly which are missing and the apt command to run, and fails (tests never skip on it).
// The root path (apt-get install) is what scripts/test.sh runs on a fresh machine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { CONTAINER_TOOLS, missingContainerTools } from "../../scripts/lib/container-tools.js";

const root = resolve(import.meta.dirname, "../..");

test("without the tools and without root, the installer fails with the missing tools and the command to run", () => {
  const asNobody = process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
  const argv = [...asNobody, "env", "PATH=/nonexistent", "HOME=/tmp", process.execPath, "--import", "tsx", "scripts/lib/container-tools.ts"];
  const run = spawnSync(argv[0]!, argv.slice(1), { cwd: root, encoding: "utf8", timeout: 60_000 });
  assert.equal(run.status, 1, run.stdout + run.stderr);
  assert.match(run.stderr, /missing container tools: umoci, skopeo, docker-registry, busybox/);
  assert.match(run.stderr, new RegExp(`install them as root with: apt-get update && apt-get install -y ${Object.values(CONTAINER_TOOLS).join(" ")}`));
});

test("on this machine (after scripts/test.sh's install step) every tool is present", () => {
  assert.deepEqual(missingContainerTools(), [], "run: node --import tsx scripts/lib/container-tools.ts (as root)");
});
