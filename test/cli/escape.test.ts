// Node- and user-supplied text reaches the terminal escaped: a hostname carrying ANSI escapes, a
// newline, a C1 control and a bidi override neither clears the screen nor forges a row in `node ls`
// (real bin/shoal.js against a fake daemon), and JSON shows the same escaped text.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { checkNoControlChars, escapeUnsafeChars, unsafeCharIndex } from "../../src/base/text.js";
import { isShoalError } from "../../src/base/errors.js";
import { NodeAvailability, NodeRole, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { nodeView, renderTable } from "../../src/cli/views.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const SELF = id("self");
const EVIL = id("evil");
// Clear screen, cursor home, a forged row on its own line, an 8-bit CSI (C1), a right-to-left override.
const HOSTILE = "web-1\x1b[2J\x1b[H\n" + `${id("forged")}   forged   Ready   Active   Leader` + "\u009b31m\u202eexe.txt\u007f\t";

function hostileNodes() {
  const node = (nodeId: string, hostname: string) => ({
    id: nodeId,
    meta: { version: 1n },
    spec: { desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels: { "k\x1b]0;t\x07": "v\r\n" } },
    description: { hostname },
    status: { state: NodeState.NODE_STATE_READY, addr: "10.0.0.2:1\x1b[1A" },
    role: NodeRole.NODE_ROLE_WORKER,
  });
  return [node(SELF, "mgr-1"), node(EVIL, HOSTILE)];
}

const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

test("the rule: C0 (tab and newline too), DEL, C1 and bidi controls are unsafe; everything else is kept", () => {
  for (const c of ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x80", "\x9b", "\x9f", "\u202a", "\u202e", "\u2066", "\u2069"]) {
    assert.equal(unsafeCharIndex(`a${c}b`), 1, JSON.stringify(c));
    assert.ok(isShoalError(captured(() => checkNoControlChars(`a${c}`, "description.hostname")), "INVALID_ARGUMENT"));
  }
  for (const ok of ["web-1.example", "Zürich-é", "日本語", "emoji 🚀", "\u00a0nbsp", "\u200bzw", "a\\x1b"]) {
    assert.equal(unsafeCharIndex(ok), -1, ok);
    assert.equal(escapeUnsafeChars(ok), ok);
  }
  assert.equal(escapeUnsafeChars("a\x1b[2J\nb\u009b\u202e"), "a\\x1b[2J\\x0ab\\x9b\\u202e");
  const err = captured(() => checkNoControlChars("host\x1bname", "description.hostname"));
  assert.match(String((err as Error).message), /description\.hostname contains the control character \\x1b at position 4/);
});

function captured(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

test("views and tables escape what they show", () => {
  const view = nodeView(hostileNodes()[1] as never, SELF);
  for (const text of [view.hostname, view.addr, ...Object.keys(view.labels), ...Object.values(view.labels)]) {
    assert.doesNotMatch(text, RAW_UNSAFE);
    assert.doesNotMatch(text, /\n/);
  }
  assert.ok(view.hostname.startsWith("web-1\\x1b[2J\\x1b[H\\x0a"), view.hostname);
  const table = renderTable(["A", "B"], [["x\ny", "\x1b[2J"]]);
  assert.equal(table.split("\n").length, 3, "one header, one row, the final newline");
  assert.doesNotMatch(table, RAW_UNSAFE);
});

let fake: FakeDaemon;
before(async () => {
  fake = await FakeDaemon.start();
});
after(async () => {
  await fake.stop();
});

test("node ls and node inspect print a hostile hostname escaped, one row per node", async () => {
  fake.reset({
    listNodes: () => ({ nodes: hostileNodes() }),
    info: () => ({ nodeId: SELF, clusterId: id("clu"), role: NodeRole.NODE_ROLE_MANAGER, state: "active", managers: [] }),
  });
  const sock = ["--socket", fake.socketPath];
  const [table, json, inspect] = await Promise.all([
    runShoal([...sock, "node", "ls"]),
    runShoal([...sock, "node", "ls", "--format", "json"]),
    runShoal([...sock, "node", "inspect", EVIL]),
  ]);
  for (const r of [table, json, inspect]) {
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, RAW_UNSAFE, "no raw control character reaches the terminal");
  }
  const lines = table.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 3, `a header and two nodes, no forged row:\n${table.stdout}`);
  assert.equal(lines.filter((l) => l.startsWith(id("forged"))).length, 0);
  assert.match(lines[2]!, /^evil0+ +web-1\\x1b\[2J\\x1b\[H\\x0aforged0+ +forged .*\\x9b31m\\u202eexe\.txt\\x7f\\x09 +Ready/);
  const parsed = JSON.parse(json.stdout) as { hostname: string }[];
  assert.equal(parsed[1]!.hostname, escapeUnsafeChars(HOSTILE));
  assert.equal((JSON.parse(inspect.stdout) as { addr: string }).addr, "10.0.0.2:1\\x1b[1A");
});
