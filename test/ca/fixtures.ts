// Shared helpers for the CA tests: temp dirs, openssl as a child process, quick issuance.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import type { Clock } from "../../src/base/clock.js";
import { ShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, type NodeRole, type RootCA } from "../../src/ca/index.js";

export function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "shoal-ca-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

/** Runs openssl; returns exit status and combined output (openssl verify prints errors on stdout and stderr). */
export function openssl(args: string[], cwd: string): { status: number; output: string } {
  const result = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  return { status: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

export function opensslOk(args: string[], cwd: string): string {
  return execFileSync("openssl", args, { cwd, encoding: "utf8" });
}

let sharedCsr: Promise<string> | undefined;
/** One CSR reused by tests that only care about the CA's choices (the key is irrelevant to them). */
export function sharedCsrPem(): Promise<string> {
  sharedCsr ??= createNodeKeyAndCsr().then((r) => r.csrPem);
  return sharedCsr;
}

export async function issue(
  root: RootCA,
  clock: Clock,
  overrides: { nodeId?: string; clusterId?: string; role?: NodeRole; zone?: string; validityMs?: number } = {},
) {
  const nodeId = overrides.nodeId ?? newId();
  const clusterId = overrides.clusterId ?? newId();
  const role = overrides.role ?? "swarm-worker";
  const issued = root.issueNodeCertificate({
    csrPem: await sharedCsrPem(),
    nodeId,
    clusterId,
    role,
    ...(overrides.zone !== undefined ? { zone: overrides.zone } : {}),
    ...(overrides.validityMs !== undefined ? { validityMs: overrides.validityMs } : {}),
    clock,
  });
  return { ...issued, nodeId, clusterId, role };
}

/** Asserts that fn throws a ShoalError with `code`; returns it for further checks. */
export function throwsCode(fn: () => unknown, code: ShoalErrorCode): ShoalError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ShoalError, `expected ShoalError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected ShoalError ${code}, but nothing was thrown`);
}

export async function rejectsCode(fn: () => Promise<unknown>, code: ShoalErrorCode): Promise<ShoalError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof ShoalError, `expected ShoalError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected ShoalError ${code}, but nothing was thrown`);
}
