// The pieces of `--metrics-addr` without a daemon: which addresses are loopback, the prefetch byte
// counting (progress as it comes, a job's remainder at its end, nothing for a repeated report),
// and that prom-client is imported only by src/daemon/metrics (lower layers expose observers).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { isShoalError } from "../../src/base/errors.js";
import { isLoopbackHost, parseMetricsAddr } from "../../src/daemon/metrics/metrics-addr.js";
import { PrefetchByteCounter, type PrefetchSource } from "../../src/daemon/metrics/prefetch-bytes.js";

test("--metrics-addr: loopback hosts pass, others need --metrics-allow-remote, malformed ones are INVALID_ARGUMENT", () => {
  for (const [text, host, port] of [
    ["127.0.0.1:9323", "127.0.0.1", 9323],
    ["127.1.2.3:0", "127.1.2.3", 0],
    ["localhost:80", "localhost", 80],
    ["[::1]:9323", "::1", 9323],
  ] as const) {
    assert.deepEqual(parseMetricsAddr(text, false), { host, port });
  }
  for (const text of ["0.0.0.0:9323", "10.1.2.3:9323", "[::]:9323", "example.com:9323", "128.0.0.1:1", "[::ffff:10.0.0.1]:1"]) {
    assert.throws(() => parseMetricsAddr(text, false), (e) => isShoalError(e, "METRICS_ADDR_NOT_LOOPBACK") && e.message.includes("--metrics-allow-remote"), text);
    assert.doesNotThrow(() => parseMetricsAddr(text, true), text);
  }
  for (const text of ["", "9323", ":9323", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x", "::1:9323", "bad_host:1", "a b:1"]) {
    assert.throws(() => parseMetricsAddr(text, true), (e) => isShoalError(e, "INVALID_ARGUMENT"), JSON.stringify(text));
  }
  assert.equal(isLoopbackHost("::ffff:127.0.0.1"), true);
  assert.equal(isLoopbackHost("LOCALHOST"), true);
  assert.equal(isLoopbackHost("localhost.example.com"), false);
});

test("prefetch bytes: progress deltas by source, the remainder at the end, a repeated end adds nothing", () => {
  const added: Record<PrefetchSource, number> = { peer: 0, registry: 0 };
  const counter = new PrefetchByteCounter((source, bytes) => {
    assert.ok(bytes > 0);
    added[source] += bytes;
  });
  const progress = (jobId: string, digest: string, peers: number, origin: number) =>
    counter.report({ kind: "progress", jobId, progress: { digest, piecesDone: 0, pieceCount: 1, bytesFromPeers: peers, bytesFromOrigin: origin } });
  progress("j1", "sha256:a", 100, 0);
  progress("j1", "sha256:a", 250, 10);
  progress("j1", "sha256:b", 50, 0);
  assert.deepEqual(added, { peer: 300, registry: 10 });
  // A stale (smaller) progress report subtracts nothing.
  progress("j1", "sha256:a", 200, 10);
  assert.deepEqual(added, { peer: 300, registry: 10 });
  // The job's totals: what progress did not show is added once.
  counter.report({ kind: "done", jobId: "j1", bytesFromPeers: 400, bytesFromRegistry: 10 });
  assert.deepEqual(added, { peer: 400, registry: 10 });
  // A new leader asks for every ended job again: nothing more.
  counter.report({ kind: "done", jobId: "j1", bytesFromPeers: 400, bytesFromRegistry: 10 });
  progress("j1", "sha256:a", 999, 999);
  assert.deepEqual(added, { peer: 400, registry: 10 });
  // A seed's job that reported no progress counts its totals at the end.
  counter.report({ kind: "done", jobId: "j2", bytesFromPeers: 0, bytesFromRegistry: 5000 });
  assert.deepEqual(added, { peer: 400, registry: 5010 });
  // A failed job keeps what its progress counted.
  progress("j3", "sha256:c", 70, 0);
  counter.report({ kind: "failed", jobId: "j3", code: "PREFETCH_NO_SOURCE", message: "x" });
  assert.deepEqual(added, { peer: 470, registry: 5010 });
});

test("prom-client is imported only under src/daemon/metrics", () => {
  const src = resolve(import.meta.dirname, "../../src");
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : n.endsWith(".ts") ? [join(dir, n)] : []));
  const importers = walk(src).filter((f) => /from\s+["']prom-client["']|import\(\s*["']prom-client["']/.test(readFileSync(f, "utf8"))).map((f) => relative(src, f));
  assert.ok(importers.length > 0);
  assert.deepEqual(importers.filter((f) => !f.startsWith("daemon/metrics/")), []);
});
