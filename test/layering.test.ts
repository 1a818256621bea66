// DESIGN.md §1: a folder imports only from lower layers, never from a sibling of its own layer or
// from above; src/ never imports cluster-sim/; the raft core is pure (no timers, sockets, disk,
// clocks or global randomness).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";

const root = resolve(import.meta.dirname, "..");
const src = join(root, "src");

export const LAYERS: Record<string, number> = {
  base: -1,
  proto: 0,
  crypto: 0,
  ca: 1,
  storage: 1,
  oci: 1,
  raft: 2,
  transport: 2,
  state: 3,
  manager: 4,
  agent: 4,
  daemon: 5,
  cli: 6,
};

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : path.endsWith(".ts") ? [path] : [];
  });
}

function importsOf(file: string, read: (f: string) => string = (f) => readFileSync(f, "utf8")): string[] {
  const text = read(file);
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|import\s+["']([^"']+)["']/g)) {
    specs.push(m[1] ?? m[2] ?? m[3]!);
  }
  return specs;
}

/** The layer folder of a path under src/, e.g. "raft" for src/raft/core/log.ts. */
function folderOf(path: string): string | undefined {
  const rel = relative(src, path);
  if (rel.startsWith("..")) return undefined;
  return rel.split("/")[0];
}

export function layeringViolations(files: string[], read?: (f: string) => string): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const from = folderOf(file);
    if (from === undefined) continue;
    const fromLayer = LAYERS[from];
    if (fromLayer === undefined) {
      problems.push(`${relative(root, file)}: folder src/${from} has no layer in DESIGN.md §1`);
      continue;
    }
    for (const spec of importsOf(file, read)) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      if (relative(root, target).startsWith("cluster-sim")) {
        problems.push(`${relative(root, file)} imports cluster-sim (${spec})`);
        continue;
      }
      const to = folderOf(target);
      if (to === undefined || to === from) continue;
      const toLayer = LAYERS[to];
      if (toLayer === undefined || toLayer >= fromLayer) {
        problems.push(`${relative(root, file)} (layer ${fromLayer}, ${from}) imports src/${to} (layer ${toLayer ?? "?"}) via ${spec}`);
      }
    }
  }
  return problems;
}

test("no folder under src/ imports from its own layer's siblings or from above", () => {
  assert.deepEqual(layeringViolations(walk(src)), []);
});

test("the layering check catches upward, sibling and cluster-sim imports (so it can fail)", () => {
  const files: Record<string, string> = {
    [join(src, "crypto", "a.ts")]: `import { start } from "../daemon/start.js";`,
    [join(src, "ca", "b.ts")]: `import { open } from "../storage/store.js";`,
    [join(src, "state", "c.ts")]: `export { sim } from "../../cluster-sim/net.js";`,
    [join(src, "cli", "d.ts")]: `import { x } from "../daemon/start.js";\nimport "../crypto/aead.js";`,
  };
  const problems = layeringViolations(Object.keys(files), (f) => files[f]!);
  assert.equal(problems.length, 3, problems.join("\n"));
  assert.match(problems[0]!, /crypto\/a\.ts .* imports src\/daemon/);
  assert.match(problems[1]!, /ca\/b\.ts .* imports src\/storage/);
  assert.match(problems[2]!, /imports cluster-sim/);
});

test("src/raft/core is pure: no timers, sockets, disk, clocks or global randomness", () => {
  const core = join(src, "raft", "core");
  const forbidden = [/\bsetTimeout\b/, /\bsetInterval\b/, /\bsetImmediate\b/, /\bDate\.now\b/, /\bnew Date\b/, /\bMath\.random\b/, /from\s+["']node:/, /from\s+["'](?:fs|net|dgram|http|https|child_process)["']/, /process\.hrtime/, /performance\.now/];
  const problems: string[] = [];
  let files: string[] = [];
  try {
    files = walk(core);
  } catch {
    return; // not written yet
  }
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const pattern of forbidden) if (pattern.test(text)) problems.push(`${relative(root, file)} uses ${pattern}`);
    for (const spec of importsOf(file)) {
      if (spec.startsWith(".") && !resolve(dirname(file), spec).startsWith(core) && folderOf(resolve(dirname(file), spec)) !== "base") {
        problems.push(`${relative(root, file)} imports outside the core: ${spec}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

/** Files under `scripts/` that import anything under `test/` (tests use the scripts' harness, not the other way round). */
export function scriptImportsOfTests(files: string[], read?: (f: string) => string): string[] {
  const problems: string[] = [];
  for (const file of files) {
    for (const spec of importsOf(file, read)) {
      if (!spec.startsWith(".")) continue;
      if (relative(root, resolve(dirname(file), spec)).split("/")[0] === "test") problems.push(`${relative(root, file)} imports test/ (${spec})`);
    }
  }
  return problems;
}

/**
 * The one exception: the in-process RaftNode benchmark shares test/raftnode/harness.ts (a loopback
 * cluster of RaftNodes, not the child-process harness), which is being reworked with the node's
 * durable-log interface; it moves to scripts/lib/ once that lands.
 */
const TEST_IMPORT_EXCEPTIONS = new Set(["scripts/bench/raftnode-durable.ts imports test/ (../../test/raftnode/harness.js)"]);

test("scripts/ never imports test/, and the check can fail", () => {
  assert.deepEqual(scriptImportsOfTests(walk(join(root, "scripts"))).filter((p) => !TEST_IMPORT_EXCEPTIONS.has(p)), []);
  const fake = join(root, "scripts", "bench", "x.ts");
  assert.equal(scriptImportsOfTests([fake], () => `import { ProcessCluster } from "../../test/e2e/cluster.js";`).length, 1);
  assert.equal(scriptImportsOfTests([fake], () => `import { ProcessCluster } from "../lib/cluster.js";`).length, 0);
});

test("src/manager (but its dispatcher, converted separately) and src/state read time only from the injected Clock", () => {
  const forbidden = [/\bDate\.now\b/, /(?<![.\w])setTimeout\(/, /(?<![.\w])setInterval\(/];
  const files = [...walk(join(src, "manager")).filter((f) => !f.includes(`${join(src, "manager", "dispatcher")}/`)), ...walk(join(src, "state"))];
  const problems: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const pattern of forbidden) if (pattern.test(text)) problems.push(`${relative(root, file)} uses ${pattern}`);
  }
  assert.deepEqual(problems, []);
});
