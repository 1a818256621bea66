// The container-tools installer's refusal path: a non-root process that lacks the tools is told
// exactly which are missing and the apt command to run, and fails (tests never skip on it).
// The root path (apt-get install) is what scripts/test.sh runs on a fresh machine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CONTAINER_TOOLS, install, missingContainerTools } from "../../scripts/lib/container-tools.js";

test("without the tools and without root, the installer fails with the missing tools and the command to run", async () => {
  // In-process, with the tools hidden from PATH and apt-get not allowed: running the script as
  // another user needs the clone to be readable by that user, which a CI checkout under a 0700
  // directory is not (a soak run's mktemp dir failed it that way).
  const path = process.env["PATH"];
  process.env["PATH"] = "/nonexistent";
  try {
    await assert.rejects(install(() => undefined, false), (err: Error) => {
      assert.match(err.message, /missing container tools: umoci, skopeo, docker-registry, busybox/);
      assert.match(err.message, new RegExp(`install them as root with: apt-get update && apt-get install -y ${Object.values(CONTAINER_TOOLS).join(" ")}`));
      return true;
    });
  } finally {
    process.env["PATH"] = path;
  }
});

test("on this machine (after scripts/test.sh's install step) every tool is present", () => {
  assert.deepEqual(missingContainerTools(), [], "run: node --import tsx scripts/lib/container-tools.ts (as root)");
});
