// A one-manager cluster in this process (a real daemon: TLS listener, raft, encrypted store in a temp
// dir) with fast raft timing, for tests that talk to its dispatcher or CA over mutual TLS.
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { InitResponse } from "../../src/proto/shoal/v1/local.js";
import { freePort } from "../e2e/cluster.js";

export interface SingleManager {
  dir: string;
  addr: string;
  daemon: Awaited<ReturnType<typeof startDaemon>>;
  client: DaemonClient;
  init: InitResponse;
}

/** Starts and inits the manager; stopped and its directory removed when the test ends. */
export async function singleManager(t: TestContext, prefix: string, options: { logger?: Logger; workloadLoops?: boolean } = {}): Promise<SingleManager> {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const dir = join(root, "m1");
  const addr = `127.0.0.1:${await freePort()}`;
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: options.logger ?? pino({ level: "silent" }), raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300, workloadLoops: options.workloadLoops });
  const client = new DaemonClient(daemon.socketPath);
  t.after(async () => {
    client.close();
    await daemon.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const init = await client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  return { dir, addr, daemon, client, init };
}

/** Asserts that `call` fails with `code` (and a message matching `pattern`); returns the message. */
export async function refusedWith(call: Promise<unknown>, code: ShoalErrorCode, pattern?: RegExp): Promise<string> {
  try {
    await call;
  } catch (err) {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    if (pattern !== undefined) assert.match(err.message, pattern);
    return err.message;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}
