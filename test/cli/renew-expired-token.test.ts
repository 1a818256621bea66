// `shoal daemon --renew-expired --renew-expired-token-file F`: the manager token comes from a file or
// stdin, never argv; bad files are refused with a usage error that does not echo their content.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { isShoalError } from "../../src/base/errors.js";
import { readTokenFile } from "../../src/cli/daemon-command.js";
import { runCli } from "../../src/cli/program.js";

const TOKEN = `SWMTKN-1-${"a".repeat(50)}-${"b".repeat(25)}`;

test("the token is read from a file or stdin (first line, trimmed); empty, missing and oversized files are refused without echoing them", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-token-file-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "token");
  writeFileSync(file, `  ${TOKEN}  \nsecond line\n`, { mode: 0o600 });
  assert.equal(await readTokenFile(file, Readable.from([])), TOKEN);
  assert.equal(await readTokenFile("-", Readable.from([Buffer.from(`${TOKEN}\n`)])), TOKEN);

  const refused = async (path: string, stdin: Readable, pattern: RegExp) =>
    assert.rejects(readTokenFile(path, stdin), (e) => {
      assert.ok(isShoalError(e, "INVALID_ARGUMENT"), String(e));
      assert.match((e as Error).message, pattern);
      return true;
    });
  writeFileSync(join(dir, "empty"), "\n\n");
  await refused(join(dir, "empty"), Readable.from([]), /holds no token/);
  await refused(join(dir, "missing"), Readable.from([]), /cannot read --renew-expired-token-file .*ENOENT/);
  const secretish = "x".repeat(5000);
  writeFileSync(join(dir, "big"), secretish);
  await assert.rejects(readTokenFile(join(dir, "big"), Readable.from([])), (e) => isShoalError(e, "INVALID_ARGUMENT") && !(e as Error).message.includes("xxxx"));
  await refused("-", Readable.from([Buffer.from(secretish)]), /more than 4096 bytes/);
});

test("--renew-expired-token-file without --renew-expired is a usage error before any daemon starts", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-token-flag-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "token");
  writeFileSync(file, TOKEN);
  let stderr = "";
  // The data dir is a file: were the flag accepted, the daemon would fail to start (exit 1) rather than run on.
  const code = await runCli(["--data-dir", file, "daemon", "--listen-addr", "127.0.0.1:1", "--renew-expired-token-file", file], {
    stdout: () => undefined,
    stderr: (s) => (stderr += s),
    stdin: Readable.from([]),
    env: {},
  });
  assert.equal(code, 2, stderr);
  assert.match(stderr, /--renew-expired-token-file goes with --renew-expired/);
  assert.ok(!stderr.includes(TOKEN));
});
