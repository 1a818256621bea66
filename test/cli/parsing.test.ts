// The CLI's pure parts: duration parsing, socket path precedence, exit codes per error class, the
// daemon's --hostname, and the docker-style table layout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { parseCertExpirySeconds, parseDurationSeconds } from "../../src/cli/duration.js";
import { resolveSocketPath } from "../../src/cli/daemon-client.js";
import { parseHostname } from "../../src/cli/daemon-command.js";
import { exitCodeFor } from "../../src/cli/exit-codes.js";
import { renderTable } from "../../src/cli/views.js";

test("durations: d, h, m, s in that order become seconds", () => {
  const table: [string, number][] = [
    ["90d", 90 * 86_400],
    ["2160h", 2160 * 3_600],
    ["1h30m", 5_400],
    ["45m", 2_700],
    ["30s", 30],
    ["1d2h3m4s", 86_400 + 7_200 + 180 + 4],
    ["0s", 0],
    [" 15m ", 900],
  ];
  for (const [text, seconds] of table) assert.equal(parseDurationSeconds(text), seconds, text);
});

test("durations: garbage is refused with INVALID_ARGUMENT and a message that shows the form", () => {
  for (const text of ["", "h", "10", "1.5h", "-1h", "1w", "30m1h", "1h1h", "abc", "1h 30m", "36501d", "99999999999999999999s"]) {
    assert.throws(
      () => parseDurationSeconds(text, "--expires-in"),
      (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /--expires-in/.test(err.message),
      JSON.stringify(text),
    );
  }
});

test("--cert-expiry is at least one hour", () => {
  assert.equal(parseCertExpirySeconds("1h"), 3_600);
  assert.equal(parseCertExpirySeconds("60m"), 3_600);
  assert.throws(() => parseCertExpirySeconds("59m59s"), /below the minimum of 1h/);
  assert.throws(() => parseCertExpirySeconds("0s"), /below the minimum of 1h/);
});

test("socket: --socket, else SHOAL_SOCKET, else DATA_DIR/shoal.sock, else /var/lib/shoal/shoal.sock", () => {
  const env = { SHOAL_SOCKET: "/run/env.sock" };
  assert.equal(resolveSocketPath({ socket: "/run/flag.sock", dataDir: "/d" }, env), "/run/flag.sock");
  assert.equal(resolveSocketPath({ dataDir: "/d" }, env), "/run/env.sock");
  assert.equal(resolveSocketPath({ dataDir: "/d" }, {}), "/d/shoal.sock");
  assert.equal(resolveSocketPath({}, {}), "/var/lib/shoal/shoal.sock");
  assert.equal(resolveSocketPath({}, { SHOAL_SOCKET: "" }), "/var/lib/shoal/shoal.sock");
  assert.equal(resolveSocketPath({ socket: "rel.sock" }, {}), `${process.cwd()}/rel.sock`);
});

test("exit codes are stable per class", () => {
  assert.equal(exitCodeFor("INTERNAL"), 1);
  assert.equal(exitCodeFor("INVALID_ARGUMENT"), 2);
  assert.equal(exitCodeFor("MESSAGE_TOO_LARGE"), 2);
  assert.equal(exitCodeFor("UNAVAILABLE"), 3);
  assert.equal(exitCodeFor("NO_QUORUM"), 3);
  assert.equal(exitCodeFor("TIMEOUT"), 3);
  assert.equal(exitCodeFor("LOCKED"), 4);
  assert.equal(exitCodeFor("NOT_MANAGER"), 4);
  assert.equal(exitCodeFor("UNLOCK_KEY_WRONG"), 4);
  assert.equal(exitCodeFor("TOKEN_ROTATED"), 4);
  assert.equal(exitCodeFor("NOT_FOUND"), 5);
  assert.equal(exitCodeFor("ALREADY_EXISTS"), 6);
  assert.equal(exitCodeFor("FAILED_PRECONDITION"), 6);
  assert.equal(exitCodeFor("VERSION_CONFLICT"), 6);
});

test("tables pad every column but the last to its widest cell plus three spaces", () => {
  assert.equal(renderTable(["ID", "NAME", "X"], [["a", "longname", ""], ["bbbb", "n", "z"]]), "ID     NAME       X\na      longname\nbbbb   n          z\n");
});

test("--hostname takes RFC 1123 host names and refuses anything else with INVALID_ARGUMENT", () => {
  for (const ok of ["w1", "worker-1", "a.b.example", "x".repeat(63), `${"a".repeat(63)}.${"b".repeat(63)}`]) assert.equal(parseHostname(ok), ok);
  for (const bad of ["", "-w", "w-", "a..b", "x".repeat(64), "w 1", "w\n1", "w/1", "ünï", `${"a.".repeat(127)}a`]) {
    assert.throws(() => parseHostname(bad), (e) => isShoalError(e, "INVALID_ARGUMENT") && /host name/.test(e.message), JSON.stringify(bad));
  }
});
