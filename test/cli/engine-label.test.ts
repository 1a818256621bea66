// `shoal daemon --engine-label K=V` (repeatable): node-reported labels are bounded and free of
// control characters, since they travel in every session request and show in `node inspect`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { collectEngineLabel } from "../../src/cli/daemon-command.js";

test("--engine-label collects K=V pairs and refuses bad keys, values and too many", () => {
  let labels = collectEngineLabel("disk=ssd");
  labels = collectEngineLabel("gpu=", labels);
  labels = collectEngineLabel("disk=nvme", labels);
  assert.deepEqual(labels, { disk: "nvme", gpu: "" });
  for (const bad of ["=x", "bad key=1", "a/b=1", `k=${"v".repeat(257)}`, "k=line\nbreak", "k=\u001b[2J"]) {
    assert.throws(() => collectEngineLabel(bad), (e) => isShoalError(e, "INVALID_ARGUMENT"), JSON.stringify(bad));
  }
  let many: Record<string, string> = {};
  for (let i = 0; i < 64; i++) many = collectEngineLabel(`k${i}=v`, many);
  assert.throws(() => collectEngineLabel("one-more=v", many), /at most 64/);
});
