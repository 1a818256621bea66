// What `shoal image prefetch status` renders, as pure functions: sizes in binary units, compact ages,
// progress as (peers + registry) / size (a done node complete, a zero-size job "-"), nodes sorted by
// zone and role, names falling back to IDs, a node's hostile failure message escaped in the table and
// the JSON view, and the live redraw's erase sequence and width cut.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PrefetchJobStatus } from "../../src/proto/shoal/v1/control.js";
import {
  ageText,
  bytesText,
  jobEnded,
  prefetchJobView,
  progressText,
  redraw,
  renderPrefetchStatus,
} from "../../src/cli/prefetch-view.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const NOW = Date.parse("2026-12-01T12:00:00.000Z");
const MIB = 1024 * 1024;
const DIGEST = `sha256:${"ab12cd34ef56".repeat(5)}abcd`;
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;
// A node's error as a hostile node might report it: clear screen, a forged row, an 8-bit CSI, a bidi override.
const HOSTILE = "DIGEST_MISMATCH: bad\x1b[2J\x1b[H\nforged-node   default   seed   done\u009b31m\u202etxt";

// Loosely typed, as the views must cope with whatever a server sends.
function job(overrides: Record<string, unknown> = {}): PrefetchJobStatus {
  return PrefetchJobStatus.fromPartial({
    jobId: `${id("svc")}.3.ab12cd34ef56ab12`,
    serviceId: id("svc"),
    specVersion: 3n,
    image: "127.0.0.1:5000/web:1",
    manifestDigest: DIGEST,
    state: "running",
    sizeBytes: BigInt(64 * MIB),
    startedAt: new Date(NOW - 75_000),
    nodes: [
      { nodeId: id("n3"), zone: "b", role: "peer", state: "running", bytesFromPeers: BigInt(16 * MIB), bytesFromRegistry: 0n },
      { nodeId: id("n2"), zone: "a", role: "peer", state: "failed", bytesFromPeers: 1024n, bytesFromRegistry: 0n, message: HOSTILE },
      { nodeId: id("n1"), zone: "a", role: "seed", state: "done", bytesFromPeers: 0n, bytesFromRegistry: BigInt(64 * MIB) },
      { nodeId: id("n4"), zone: "", role: "peer", state: "pending" },
    ],
    ...overrides,
  } as Parameters<typeof PrefetchJobStatus.fromPartial>[0]);
}

const HOSTS: Record<string, string> = { [id("n1")]: "seed-a", [id("n2")]: "web-2", [id("n3")]: "web-3" };
const hostnameOf = (nodeId: string): string => HOSTS[nodeId] ?? "";
const serviceNameOf = (serviceId: string): string => (serviceId === id("svc") ? "web" : "");

test("sizes are binary units with one decimal above 1 KiB; ages are compact", () => {
  assert.equal(bytesText(0), "0 B");
  assert.equal(bytesText(1023), "1023 B");
  assert.equal(bytesText(1024), "1.0 KiB");
  assert.equal(bytesText(1536), "1.5 KiB");
  assert.equal(bytesText(64 * MIB), "64.0 MiB");
  assert.equal(bytesText(MIB - 1), "1.0 MiB", "never 1024.0 KiB");
  assert.equal(bytesText(3 * 1024 * MIB + 512 * MIB), "3.5 GiB");
  const start = new Date(NOW).toISOString();
  assert.equal(ageText(start, NOW), "0s");
  assert.equal(ageText(start, NOW + 42_000), "42s");
  assert.equal(ageText(start, NOW + 192_000), "3m12s");
  assert.equal(ageText(start, NOW + (2 * 3600 + 5 * 60 + 9) * 1000), "2h5m");
  assert.equal(ageText(start, NOW + (3 * 86_400 + 4 * 3600) * 1000), "3d4h");
  assert.equal(ageText(start, NOW - 5000), "0s", "a leader clock ahead of ours is not a negative age");
  assert.equal(ageText("", NOW), "");
});

test("the JSON view: numbers as numbers, ISO times, names resolved or empty, nodes by zone then seeds first", () => {
  const v = prefetchJobView(job(), serviceNameOf, hostnameOf);
  assert.equal(v.serviceName, "web");
  assert.equal(v.specVersion, 3);
  assert.equal(v.sizeBytes, 64 * MIB);
  assert.equal(v.startedAt, new Date(NOW - 75_000).toISOString());
  assert.equal(v.endedAt, "");
  assert.deepEqual(
    v.nodes.map((n) => [n.zone, n.role, n.hostname || n.nodeId]),
    [["a", "seed", "seed-a"], ["a", "peer", "web-2"], ["b", "peer", "web-3"], ["default", "peer", id("n4")]],
  );
  const [seed, failed, peer, pending] = v.nodes;
  assert.equal(seed!.bytesFromRegistry, 64 * MIB);
  assert.equal(seed!.progress, 1);
  assert.equal(peer!.progress, 0.25);
  assert.equal(pending!.progress, 0);
  assert.equal(failed!.progress, 1024 / (64 * MIB));
  assert.deepEqual(Object.keys(v), ["jobId", "serviceId", "serviceName", "specVersion", "image", "manifestDigest", "state", "sizeBytes", "startedAt", "endedAt", "message", "nodes"]);
  assert.deepEqual(Object.keys(seed!), ["nodeId", "hostname", "zone", "role", "state", "bytesFromPeers", "bytesFromRegistry", "progress", "message"]);
  // A service removed since: no name, the table shows its ID.
  const orphan = prefetchJobView(job({ serviceId: id("gone") }), serviceNameOf, hostnameOf);
  assert.equal(orphan.serviceName, "");
  assert.match(renderPrefetchStatus([orphan], NOW), /^gone00000000 +3 /m);
});

test("the table: one row per job and per node, sizes and progress human-readable, the failure message escaped", () => {
  const text = renderPrefetchStatus([prefetchJobView(job(), serviceNameOf, hostnameOf)], NOW);
  assert.doesNotMatch(text, RAW_UNSAFE, "no raw control character reaches the terminal");
  const lines = text.trimEnd().split("\n");
  assert.equal(lines.length, 7, `job header and row, node header and four nodes, no forged row:\n${text}`);
  assert.match(lines[0]!, /^SERVICE +VERSION +IMAGE +DIGEST +STATE +SIZE +AGE/);
  assert.match(lines[1]!, /^web +3 +127\.0\.0\.1:5000\/web:1 +ab12cd34ef56 +running +64\.0 MiB +1m15s$/);
  assert.match(lines[2]!, /^ {2}NODE +ZONE +ROLE +STATE +FROM PEERS +FROM REGISTRY +PROGRESS +MESSAGE$/);
  assert.match(lines[3]!, /^ {2}seed-a +a +seed +done +0 B +64\.0 MiB +100%$/);
  assert.match(lines[4]!, /^ {2}web-2 +a +peer +failed +1\.0 KiB +0 B +0% +DIGEST_MISMATCH: bad\\x1b\[2J\\x1b\[H\\x0aforged-node +default +seed +done\\x9b31m\\u202etxt$/);
  assert.match(lines[5]!, /^ {2}web-3 +b +peer +running +16\.0 MiB +0 B +25%$/);
  assert.match(lines[6]!, /^ {2}n40000000000 +default +peer +pending +0 B +0 B +0%$/, "no hostname: the ID, cut to 12");
  const json = JSON.stringify(prefetchJobView(job(), serviceNameOf, hostnameOf));
  assert.doesNotMatch(json.replace(/\\\\/g, ""), /\\u00|\\n|\\r|\\t/, "the JSON view carries the escaped text, not JSON escapes of raw controls");
  assert.doesNotMatch(JSON.parse(json).nodes[1].message, RAW_UNSAFE);
});

test("a zero-size job (not resolved yet) shows '-' for size and progress, except for a node that is done", () => {
  const v = prefetchJobView(
    job({ state: "resolving", sizeBytes: 0n, nodes: [{ nodeId: id("n1"), zone: "a", role: "seed", state: "pending" }, { nodeId: id("n2"), zone: "a", role: "peer", state: "done" }] }),
    serviceNameOf,
    hostnameOf,
  );
  assert.deepEqual(v.nodes.map((n) => n.progress), [0, 1]);
  assert.equal(progressText(v.nodes[0]!, 0), "-");
  assert.equal(progressText(v.nodes[1]!, 0), "100%");
  const text = renderPrefetchStatus([v], NOW);
  assert.match(text, /^web +3 +\S+ +ab12cd34ef56 +resolving +- +1m15s$/m);
  assert.match(text, /^ {2}seed-a +a +seed +pending +0 B +0 B +-$/m);
  // Progress never exceeds 100% (a node that fetched some bytes twice) and only says 100% when all came.
  const over = prefetchJobView(job({ nodes: [{ nodeId: id("n1"), zone: "a", role: "peer", state: "running", bytesFromPeers: BigInt(70 * MIB) }, { nodeId: id("n2"), zone: "a", role: "peer", state: "running", bytesFromPeers: BigInt(64 * MIB - 1) }] }), serviceNameOf, hostnameOf);
  assert.deepEqual(over.nodes.map((n) => progressText(n, over.sizeBytes)), ["100%", "99%"]);
});

test("jobs with no nodes and no jobs at all say so; ended states are done, failed and ended", () => {
  assert.equal(renderPrefetchStatus([], NOW), "No prefetch jobs.\n");
  assert.match(renderPrefetchStatus([prefetchJobView(job({ nodes: [], state: "failed", message: "IMAGE_NOT_FOUND: no such tag" }), serviceNameOf, hostnameOf)], NOW), /failed +64\.0 MiB +1m15s +IMAGE_NOT_FOUND: no such tag\n {2}\(no target nodes\)\n$/);
  assert.deepEqual(["resolving", "running", "done", "failed", "ended"].map((state) => jobEnded({ state })), [false, false, true, true, true]);
});

test("redraw: the first frame as is; later frames erase the previous rows first and are cut to the width; the final frame whole", () => {
  const first = redraw(0, "a\nbb\n", { columns: 80, final: false });
  assert.deepEqual(first, { output: "a\nbb\n", rows: 2 });
  const second = redraw(first.rows, "0123456789\nx\ny\n", { columns: 5, final: false });
  assert.equal(second.output, "\r\x1b[2A\x1b[J0123…\nx\ny\n");
  assert.equal(second.rows, 3);
  const last = redraw(second.rows, "0123456789\n", { columns: 5, final: true });
  assert.equal(last.output, "\r\x1b[3A\x1b[J0123456789\n");
  assert.equal(redraw(0, "0123456789\n", { final: false }).output, "0123456789\n", "no known width: nothing cut");
});
