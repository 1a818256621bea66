// `shoal daemon`: runs a node in the foreground until SIGINT/SIGTERM. `--data-dir` and `--socket`
// are program-level options (program.ts), read here through optsWithGlobals().
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { ShoalError } from "../base/errors.js";
import { DEFAULT_RAFT_TIMING, DEFAULT_SNAPSHOT_INTERVAL_ENTRIES } from "../raft/node/index.js";
import { createDaemonLogger } from "../daemon/logger.js";
import { startDaemon } from "../daemon/daemon.js";
import { parseByteRate, parseByteSize } from "../daemon/byte-rate.js";
import { DEFAULT_DATA_DIR } from "./daemon-client.js";
import { readBounded } from "./input.js";

function positiveInt(text: string, flag: string, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new ShoalError("INVALID_ARGUMENT", `${flag} must be an integer from 1 to ${max}`);
  return value;
}

/** Node-reported label limits (they travel in every session request). */
const MAX_ENGINE_LABELS = 64;
const ENGINE_LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MAX_ENGINE_LABEL_VALUE_BYTES = 256;

/** One `--engine-label K=V` added to the ones before it (commander's collector). */
export function collectEngineLabel(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf("=");
  const key = eq < 0 ? text : text.slice(0, eq);
  const value = eq < 0 ? "" : text.slice(eq + 1);
  if (!ENGINE_LABEL_KEY.test(key)) throw new ShoalError("INVALID_ARGUMENT", `--engine-label ${JSON.stringify(text)}: the key must be letters, digits, '.', '_' or '-' (up to 63), as in --engine-label disk=ssd`);
  if (Buffer.byteLength(value) > MAX_ENGINE_LABEL_VALUE_BYTES || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new ShoalError("INVALID_ARGUMENT", `--engine-label ${key}: the value must be at most ${MAX_ENGINE_LABEL_VALUE_BYTES} bytes with no control characters`);
  }
  const labels = { ...previous, [key]: value };
  if (Object.keys(labels).length > MAX_ENGINE_LABELS) throw new ShoalError("INVALID_ARGUMENT", `at most ${MAX_ENGINE_LABELS} --engine-label flags`);
  return labels;
}

interface DaemonFlags {
  dataDir?: string;
  socket?: string;
  listenAddr: string;
  advertiseAddr?: string;
  peerListenAddr?: string;
  raftTickMs?: string;
  raftElectionTicks?: string;
  heartbeatPeriodMs?: string;
  snapshotInterval?: string;
  engineLabel?: Record<string, string>;
  secretsDir?: string;
  hostname?: string;
  p2pUploadRate?: string;
  p2pDownloadRate?: string;
  contentMaxBytes?: string;
  renewExpired?: boolean;
  renewExpiredTokenFile?: string;
  metricsAddr?: string;
  metricsAllowRemote?: boolean;
}

/** RFC 1123 host name: dot-separated labels of letters, digits and '-' (not at a label's ends), at most 253 characters. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function parseHostname(text: string): string {
  if (!HOSTNAME.test(text)) throw new ShoalError("INVALID_ARGUMENT", `--hostname ${JSON.stringify(text)}: a host name is labels of letters, digits and '-' separated by dots (e.g. worker-1), at most 253 characters`);
  return text;
}

/** Largest token file read (a token is 111 characters; anything far longer is the wrong file). */
const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The manager join token from a file, or from stdin until EOF for `-`: kept out of argv, which `ps`
 * shows to every user. The first line, trimmed; the token itself is never echoed in an error.
 */
export async function readTokenFile(path: string, stdin: NodeJS.ReadableStream): Promise<string> {
  let text: string;
  if (path === "-") {
    text = (await readBounded(stdin, MAX_TOKEN_FILE_BYTES, () => new ShoalError("INVALID_ARGUMENT", `stdin holds more than ${MAX_TOKEN_FILE_BYTES} bytes: give only the manager join token`))).toString("utf8");
  } else {
    let content: Buffer;
    try {
      content = await readFile(resolve(path));
    } catch (err) {
      throw new ShoalError("INVALID_ARGUMENT", `cannot read --renew-expired-token-file ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
    }
    if (content.length > MAX_TOKEN_FILE_BYTES) throw new ShoalError("INVALID_ARGUMENT", `--renew-expired-token-file ${path} is larger than ${MAX_TOKEN_FILE_BYTES} bytes: it should hold only the manager join token`);
    text = content.toString("utf8");
  }
  const token = (text.split("\n")[0] ?? "").trim();
  if (token === "") throw new ShoalError("INVALID_ARGUMENT", `--renew-expired-token-file ${path === "-" ? "- (stdin)" : path} holds no token: put the output of \`shoal join-token manager -q\` in it`);
  return token;
}

export function registerDaemonCommand(program: Command, stdin: NodeJS.ReadableStream = process.stdin): void {
  program
    .command("daemon")
    .description("run a Shoal node: unjoined until `shoal init` or `shoal join`, or resuming its role")
    .requiredOption("--listen-addr <host:port>", "address of the node's TLS listener (managers)")
    .option("--advertise-addr <host:port>", "address other nodes use to reach this node (default: the listen address)")
    .option("--peer-listen-addr <host:port>", "managers: an extra listener that requires a client certificate and checks the CRL at the handshake")
    .option("--raft-tick-ms <ms>", `raft tick for a cluster this node creates or joins (default ${DEFAULT_RAFT_TIMING.tickMs})`)
    .option("--raft-election-ticks <n>", `raft election timeout in ticks (default ${DEFAULT_RAFT_TIMING.electionTicks})`)
    .option("--heartbeat-period-ms <ms>", "agent heartbeat period the dispatcher asks for (default 5000)")
    .option("--hostname <name>", "the name this node reports (default: the machine's hostname); for several nodes on one machine")
    .option("--engine-label <key=value>", "a label this node reports about itself (repeatable; untrusted: usable in constraints as engine.labels.KEY, never for a zone)", collectEngineLabel)
    .option("--secrets-dir <path>", "tmpfs directory for task secret files, wiped at start (default /dev/shm/shoal; give each node on one machine its own)")
    .option("--snapshot-interval <entries>", `raft snapshot every this many entries (default ${DEFAULT_SNAPSHOT_INTERVAL_ENTRIES})`)
    .option("--p2p-upload-rate <bytes/s>", "P2P image prefetch: most bytes per second this node serves to its peers, e.g. 10M (default 0: unlimited)")
    .option("--p2p-download-rate <bytes/s>", "P2P image prefetch: most bytes per second this node fetches from its peers, e.g. 50M (default 0: unlimited)")
    .option("--content-max-bytes <size>", "cap on the node's image content store, e.g. 10G or 512M (binary suffixes); over it, blobs no task or prefetch job here uses are removed, least recently used first (default 0: no cap)")
    .option(
      "--renew-expired",
      "the last manager of a cluster (a single-manager cluster off for longer than the certificate expiry) reissues its own expired certificate from the CA key it holds, keeping its node ID, role and zone (with autolock, after `shoal unlock`); refused when other managers exist or the node was removed",
    )
    .option(
      "--renew-expired-token-file <file>",
      "with --renew-expired, on a manager whose certificate expired while the other managers kept quorum: the file holding the current manager join token (`-`: read it from stdin); a live manager renews the certificate, keeping node ID, role, zone and raft membership",
    )
    .option("--metrics-addr <host:port>", "serve Prometheus metrics at GET /metrics on this address (default: off); loopback only unless --metrics-allow-remote")
    .option("--metrics-allow-remote", "let --metrics-addr listen on an address other than loopback (the endpoint has no authentication: firewall it)")
    .action(async (_opts: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<DaemonFlags>();
      if (flags.renewExpiredTokenFile !== undefined && flags.renewExpired !== true) {
        throw new ShoalError("INVALID_ARGUMENT", "--renew-expired-token-file goes with --renew-expired: give both to have a live manager renew this manager's expired certificate");
      }
      const renewExpiredToken = flags.renewExpiredTokenFile === undefined ? undefined : await readTokenFile(flags.renewExpiredTokenFile, stdin);
      const dataDir = resolve(flags.dataDir ?? DEFAULT_DATA_DIR);
      const logger = createDaemonLogger();
      const tickMs = flags.raftTickMs === undefined ? DEFAULT_RAFT_TIMING.tickMs : positiveInt(flags.raftTickMs, "--raft-tick-ms", 10_000);
      const electionTicks = flags.raftElectionTicks === undefined ? DEFAULT_RAFT_TIMING.electionTicks : positiveInt(flags.raftElectionTicks, "--raft-election-ticks", 1000);
      const daemon = await startDaemon({
        dataDir,
        listenAddr: flags.listenAddr,
        advertiseAddr: flags.advertiseAddr,
        peerListenAddr: flags.peerListenAddr,
        socketPath: flags.socket === undefined ? undefined : resolve(flags.socket),
        logger,
        raftTiming: { tickMs, electionTicks, heartbeatTicks: DEFAULT_RAFT_TIMING.heartbeatTicks },
        heartbeatPeriodMs: flags.heartbeatPeriodMs === undefined ? undefined : positiveInt(flags.heartbeatPeriodMs, "--heartbeat-period-ms", 60_000),
        engineLabels: flags.engineLabel ?? {},
        hostname: flags.hostname === undefined ? undefined : parseHostname(flags.hostname),
        secretsRoot: flags.secretsDir === undefined ? undefined : resolve(flags.secretsDir),
        snapshotIntervalEntries: flags.snapshotInterval === undefined ? undefined : positiveInt(flags.snapshotInterval, "--snapshot-interval", 10_000_000),
        p2pUploadBytesPerSec: flags.p2pUploadRate === undefined ? undefined : parseByteRate(flags.p2pUploadRate, "--p2p-upload-rate"),
        p2pDownloadBytesPerSec: flags.p2pDownloadRate === undefined ? undefined : parseByteRate(flags.p2pDownloadRate, "--p2p-download-rate"),
        contentMaxBytes: flags.contentMaxBytes === undefined ? undefined : parseByteSize(flags.contentMaxBytes, "--content-max-bytes"),
        renewExpired: flags.renewExpired === true,
        renewExpiredToken,
        metricsAddr: flags.metricsAddr,
        metricsAllowRemote: flags.metricsAllowRemote === true,
      });
      const onSignal = (): void => {
        void daemon.stop();
      };
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      await daemon.stopped;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      logger.flush();
      if (daemon.fatalError !== undefined) {
        throw new ShoalError("INTERNAL", `the daemon stopped on a fatal error: ${daemon.fatalError.message}`);
      }
    });
}
