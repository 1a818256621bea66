// Temp directories for storage tests, removed after each test.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

export function tempDir(t: TestContext, label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `shoal-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
