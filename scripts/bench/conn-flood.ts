// Idle-connection floods against a real manager daemon (one-manager cluster, child process): floods of
// idle TLS connections that complete the handshake (no client certificate, ALPN h2) and then send
// nothing, as an attacker without a certificate can. The client never closes them; the server must.
// Reports the daemon's RSS and open file descriptors before, right after the last flood, and once the
// server has closed them (or the wait ran out), plus how many it closed and how long that took.
// Prints one JSON object.
// Run: node --import tsx scripts/bench/conn-flood.ts [--floods 4] [--connections 2000] [--close-wait-ms 60000]
import { readdirSync, readFileSync } from "node:fs";
import tls from "node:tls";
import { performance } from "node:perf_hooks";
import { argNumber } from "./lib/args.js";
import { formCluster, loadAvg1m } from "../lib/local-cluster.js";
import { sleep } from "../lib/wait.js";

/** Handshakes in flight at once from this process (2 cores shared with the daemon). */
const CONNECT_CONCURRENCY = 200;
const CONNECT_TIMEOUT_MS = 20_000;

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Math.round((Number(line?.replace(/\D+/g, "") ?? NaN) / 1024) * 10) / 10;
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

interface Held {
  socket: tls.TLSSocket;
  closed: boolean;
}

function openIdle(port: number, held: Held[]): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ALPNProtocols: ["h2"], rejectUnauthorized: false, servername: "swarm-manager" });
    const entry: Held = { socket, closed: false };
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, CONNECT_TIMEOUT_MS);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      held.push(entry);
      resolve(true);
    });
    // Read and drop what the server sends (its SETTINGS, a GOAWAY), so its close is seen here.
    socket.resume();
    socket.on("error", () => undefined);
    socket.once("close", () => {
      entry.closed = true;
      clearTimeout(timer);
      resolve(false);
    });
  });
}

async function flood(port: number, connections: number, held: Held[]): Promise<{ handshakes: number; ms: number }> {
  const start = performance.now();
  let next = 0;
  let handshakes = 0;
  await Promise.all(
    Array.from({ length: CONNECT_CONCURRENCY }, async () => {
      while (next < connections) {
        next++;
        if (await openIdle(port, held)) handshakes++;
      }
    }),
  );
  return { handshakes, ms: Math.round(performance.now() - start) };
}

async function main(): Promise<void> {
  const floods = argNumber("--floods", 4);
  const connections = argNumber("--connections", 2000);
  const closeWaitMs = argNumber("--close-wait-ms", 60_000);
  const cluster = await formCluster({ managers: 1, workers: 0 });
  const manager = cluster.managers[0]!;
  const pid = manager.child!.pid!;
  try {
    await sleep(3000); // let start-up settle (first elections, the agent's session)
    const before = { rssMiB: rssMiB(pid), openFds: openFds(pid) };
    const held: Held[] = [];
    const perFlood: { handshakes: number; ms: number; rssMiB: number; openFds: number; stillOpenHere: number }[] = [];
    for (let i = 0; i < floods; i++) {
      const result = await flood(manager.port, connections, held);
      perFlood.push({ ...result, rssMiB: rssMiB(pid), openFds: openFds(pid), stillOpenHere: held.filter((h) => !h.closed).length });
    }
    const afterFloods = { rssMiB: rssMiB(pid), openFds: openFds(pid), stillOpen: held.filter((h) => !h.closed).length };
    const waitStart = performance.now();
    while (held.some((h) => !h.closed) && performance.now() - waitStart < closeWaitMs) await sleep(100);
    const closedByServerWithinMs = Math.round(performance.now() - waitStart);
    await sleep(2000); // give the daemon's GC a moment before reading RSS
    const afterClosed = { rssMiB: rssMiB(pid), openFds: openFds(pid), stillOpen: held.filter((h) => !h.closed).length };
    for (const h of held) h.socket.destroy();
    console.log(
      JSON.stringify(
        {
          benchmark: "conn-flood",
          floods,
          connectionsPerFlood: connections,
          handshakesCompleted: perFlood.reduce((s, f) => s + f.handshakes, 0),
          before,
          perFlood,
          afterFloods,
          afterClosed,
          // Time after the last flood until the server had closed every connection (capped by --close-wait-ms).
          closedByServerWithinMs,
          closeWaitMs,
          loadAvg1m: loadAvg1m(),
        },
        null,
        2,
      ),
    );
  } finally {
    await cluster.cluster.close();
  }
}

await main();
