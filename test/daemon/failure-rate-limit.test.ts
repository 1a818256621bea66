// Repeated wrong secrets are slowed down (in-process daemon, real mTLS and socket): wrong join tokens
// per source address at the CA, wrong unlock keys on the local socket. After the free failures,
// attempts wait before they are evaluated, so a burst of concurrent wrong ones finds the waiting
// slots full (QUEUE_FULL) instead of being answered at full speed; the right token or key given just
// after the burst still succeeds. The delays themselves are checked on a ManualClock in
// test/transport/failure-limiter.test.ts; here the observed times are only reported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr } from "../../src/ca/index.js";
import { generateUnlockKey } from "../../src/crypto/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { CAClient, type IssueNodeCertificateResponse } from "../../src/proto/shoal/v1/ca.js";
import { NodeAvailability } from "../../src/proto/shoal/v1/objects.js";
import { createJoinChannel, unaryCall } from "../../src/transport/client.js";
import { FAILURE_LIMITER_DEFAULTS } from "../../src/transport/failure-limiter.js";
import { freePort } from "../e2e/cluster.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };
const BURST = 16;

function settle<T>(p: Promise<T>): Promise<{ ok: T } | { err: unknown }> {
  return p.then(
    (ok) => ({ ok }),
    (err: unknown) => ({ err }),
  );
}

function codes(results: ({ ok: unknown } | { err: unknown })[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of results) {
    const code = "ok" in r ? "OK" : ((r.err as { code?: string }).code ?? String(r.err));
    out.set(code, (out.get(code) ?? 0) + 1);
  }
  return out;
}

test("wrong join tokens and wrong unlock keys are slowed down; the right one after a burst still works", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-ratelimit-"));
  const dir = join(root, "m1");
  const addr = `127.0.0.1:${await freePort()}`;
  const start = (): Promise<Daemon> => startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
  let daemon = await start();
  let client = new DaemonClient(daemon.socketPath);
  t.after(async () => {
    client.close();
    await daemon.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const init = await client.init({ autolock: true, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const rootCaPem = readFileSync(join(dir, "certificates/root-ca.crt"), "utf8");

  // ---- join tokens, per source address ----
  const { csrPem } = await createNodeKeyAndCsr();
  const ch = createJoinChannel(addr, rootCaPem);
  t.after(() => ch.close());
  const wrongToken = init.workerToken.slice(0, -5) + (init.workerToken.endsWith("00000") ? "11111" : "00000");
  const issue = (token: string) =>
    unaryCall<IssueNodeCertificateResponse>((cb) =>
      ch
        .client(CAClient)
        .issueNodeCertificate(
          { csr: Buffer.from(csrPem), token, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, hostname: "w", addr: "" },
          new grpc.Metadata(),
          { deadline: Date.now() + 30_000 },
          cb,
        ),
    );
  for (let i = 0; i < FAILURE_LIMITER_DEFAULTS.freeFailures + 1; i++) {
    await assert.rejects(issue(wrongToken), (e) => isShoalError(e, "TOKEN_ROTATED") || isShoalError(e, "TOKEN_INVALID"));
  }
  const burstStart = Date.now();
  const burst = codes(await Promise.all(Array.from({ length: BURST }, () => settle(issue(wrongToken)))));
  t.diagnostic(`join: a burst of ${BURST} wrong tokens took ${Date.now() - burstStart} ms: ${JSON.stringify([...burst])}`);
  assert.ok((burst.get("QUEUE_FULL") ?? 0) >= BURST - FAILURE_LIMITER_DEFAULTS.maxWaitingPerKey, `most of the burst is refused unevaluated: ${JSON.stringify([...burst])}`);
  assert.equal(burst.get("OK"), undefined);
  const rightStart = Date.now();
  const joined = await issue(init.workerToken);
  t.diagnostic(`join: the right token right after the burst succeeded after ${Date.now() - rightStart} ms`);
  assert.equal(joined.nodeId.length, 25);

  // ---- unlock keys, on the socket ----
  client.close();
  await daemon.stop();
  daemon = await start();
  client = new DaemonClient(daemon.socketPath);
  assert.equal((await client.info()).locked, true);
  const wrongKey = generateUnlockKey();
  for (let i = 0; i < FAILURE_LIMITER_DEFAULTS.freeFailures + 1; i++) {
    await assert.rejects(client.unlock({ unlockKey: wrongKey }), (e) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  }
  const unlockBurstStart = Date.now();
  const unlockBurst = codes(await Promise.all(Array.from({ length: BURST }, () => settle(client.unlock({ unlockKey: wrongKey })))));
  t.diagnostic(`unlock: a burst of ${BURST} wrong keys took ${Date.now() - unlockBurstStart} ms: ${JSON.stringify([...unlockBurst])}`);
  assert.ok((unlockBurst.get("QUEUE_FULL") ?? 0) >= BURST - FAILURE_LIMITER_DEFAULTS.maxWaitingPerKey, `most of the burst is refused unevaluated: ${JSON.stringify([...unlockBurst])}`);
  assert.equal((await client.info()).locked, true, "still locked after the wrong keys");
  const unlockStart = Date.now();
  await client.unlock({ unlockKey: init.unlockKey });
  t.diagnostic(`unlock: the right key right after the burst succeeded after ${Date.now() - unlockStart} ms`);
  assert.equal((await client.info()).locked, false);
});
