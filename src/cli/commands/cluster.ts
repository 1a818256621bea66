// Cluster lifecycle commands: init, join, join-token, unlock, unlock-key, update, info, leave.
import { Command, Option } from "commander";
import { ShoalError } from "../../base/errors.js";
import { NodeRole } from "../../proto/shoal/v1/objects.js";
import { UpdateClusterRequest_Autolock } from "../../proto/shoal/v1/control.js";
import { parseCertExpirySeconds, parseDurationSeconds } from "../duration.js";
import { externalCaFromSpec, readPem } from "../external-ca-flag.js";
import { readUnlockKey } from "../input.js";
import { retryOnVersionConflict } from "../retry.js";
import { infoView, parseAvailability } from "../views.js";
import { formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export function parseHostPort(text: string, what: string): string {
  const match = HOST_PORT.exec(text);
  const port = match === null ? NaN : Number(match[1]);
  if (match === null || port < 1 || port > 65_535) {
    throw new ShoalError("INVALID_ARGUMENT", `${what} "${text}" is not HOST:PORT: give e.g. 10.0.0.1:4242`);
  }
  return text;
}

function parseBoolean(text: string | boolean, flag: string): boolean {
  if (text === true || text === "true") return true;
  if (text === false || text === "false") return false;
  throw new ShoalError("INVALID_ARGUMENT", `${flag} must be true or false, e.g. ${flag}=false`);
}

function roleArg(text: string): NodeRole {
  if (text === "worker") return NodeRole.NODE_ROLE_WORKER;
  if (text === "manager") return NodeRole.NODE_ROLE_MANAGER;
  throw new ShoalError("INVALID_ARGUMENT", `role "${text}" is neither worker nor manager: run \`shoal join-token worker\` or \`shoal join-token manager\``);
}

function joinCommandText(token: string, addr: string): string {
  return `    shoal join --token ${token} ${addr}\n`;
}

/** The address joiners should dial: this manager's advertised address, else the leader's. */
async function managerAddress(ctx: CommandContext): Promise<string> {
  try {
    const info = await ctx.daemon().info();
    return info.addr || info.leaderAddr || "MANAGER_HOST:PORT";
  } catch {
    return "MANAGER_HOST:PORT";
  }
}

function printUnlockKey(ctx: CommandContext, key: string): void {
  ctx.io.stdout(
    "To unlock a manager after it restarts, run `shoal unlock` and give it this key:\n\n" +
      `    ${key}\n\n` +
      "Store it in a password manager: without it a locked manager cannot be restarted.\n",
  );
}

export function registerClusterCommands(program: Command, ctx: CommandContext): void {
  program
    .command("init")
    .description("create a new cluster with this node as its first manager")
    .option("--autolock", "encrypt the node's keys with an unlock key kept off the disk", false)
    .option("--cert-expiry <duration>", "validity of node certificates, e.g. 2160h (at least 1h)")
    .option("--advertise-addr <host:port>", "address other nodes use to reach this manager")
    .option(
      "--external-ca <spec>",
      "have every node certificate (this manager's first) signed by an external CFSSL signer: protocol=cfssl,url=https://HOST:PORT[,cacert=FILE] " +
        "(cacert verifies the signer's TLS certificate); needs --ca-cert; the managers then never hold the root CA key",
    )
    .option("--ca-cert <file>", "with --external-ca: the PEM root CA certificate the signer signs under (the certificate only, no key)")
    .addHelpText(
      "after",
      "\nWith --external-ca and --ca-cert the cluster's managers hold the root certificate but never its key:\n" +
        "joins and renewals fail with EXTERNAL_CA_UNAVAILABLE while the signer is down (existing certificates keep working);\n" +
        "prefetch grants are signed by the leader's own manager certificate; `shoal ca --rotate`, `shoal ca --no-external-ca`\n" +
        "and `shoal daemon --renew-expired` need the root key and are refused (CA_KEY_NOT_HELD).\n",
    )
    .action(async (opts: { autolock: boolean; certExpiry?: string; advertiseAddr?: string; externalCa?: string; caCert?: string }) => {
      const certExpirySeconds = opts.certExpiry === undefined ? 0n : BigInt(parseCertExpirySeconds(opts.certExpiry));
      const advertiseAddr = opts.advertiseAddr === undefined ? "" : parseHostPort(opts.advertiseAddr, "--advertise-addr");
      if ((opts.externalCa === undefined) !== (opts.caCert === undefined)) {
        throw new ShoalError(
          "INVALID_ARGUMENT",
          opts.externalCa === undefined
            ? "--ca-cert at init goes with --external-ca: the signer holds that root's key, the managers only its certificate"
            : "--external-ca at init needs --ca-cert ROOT.pem: the root certificate the signer signs under",
        );
      }
      const external = opts.externalCa === undefined ? {} : { externalCa: await externalCaFromSpec(opts.externalCa), caCertPem: await readPem(opts.caCert!, "--ca-cert") };
      const res = await ctx.daemon().init({
        autolock: opts.autolock,
        certExpirySeconds,
        advertiseAddr,
        tickMs: 0,
        electionTicks: 0,
        heartbeatTicks: 0,
        ...external,
      });
      const addr = advertiseAddr || (await managerAddress(ctx));
      ctx.io.stdout(
        `Cluster initialized: current node (${res.nodeId}) is now a manager of cluster ${res.clusterId}.\n\n` +
          "To add a worker to this cluster, run the following command:\n\n" +
          joinCommandText(res.workerToken, addr) +
          "\nTo add a manager to this cluster, run `shoal join-token manager` and follow the instructions.\n",
      );
      if (res.unlockKey !== "") {
        ctx.io.stdout("\n");
        printUnlockKey(ctx, res.unlockKey);
      }
    });

  program
    .command("join")
    .description("join an existing cluster as a worker or a manager, as the token says")
    .requiredOption("--token <token>", "join token from `shoal join-token` (SWMTKN-1-...)")
    .option("--advertise-addr <host:port>", "address other nodes use to reach this node")
    .addOption(new Option("--availability <availability>", "availability of this node").choices(["active", "pause", "drain"]).default("active"))
    .argument("<manager>", "address of a manager, HOST:PORT")
    .action(async (manager: string, opts: { token: string; advertiseAddr?: string; availability: string }) => {
      // The token itself is never echoed back, not even in an error.
      if (!opts.token.startsWith("SWMTKN-1-")) {
        throw new ShoalError("TOKEN_MALFORMED", "the join token does not start with SWMTKN-1-: copy it from `shoal join-token worker` on a manager");
      }
      const res = await ctx.daemon().join({
        token: opts.token,
        remoteAddr: parseHostPort(manager, "manager address"),
        advertiseAddr: opts.advertiseAddr === undefined ? "" : parseHostPort(opts.advertiseAddr, "--advertise-addr"),
        availability: parseAvailability(opts.availability),
      });
      const role = res.role === NodeRole.NODE_ROLE_MANAGER ? "manager" : "worker";
      ctx.io.stdout(`This node (${res.nodeId}) joined cluster ${res.clusterId} as a ${role}.\n`);
    });

  program
    .command("join-token")
    .description("print (or rotate) the token to join as a worker or a manager")
    .argument("<role>", "worker or manager")
    .option("--rotate", "replace the token; the old one stops working", false)
    .option("--expires-in <duration>", "with --rotate: the new token expires after this long, e.g. 1h")
    .option("-q, --quiet", "print only the token", false)
    .action(async (roleText: string, opts: { rotate: boolean; expiresIn?: string; quiet: boolean }) => {
      const role = roleArg(roleText);
      let expiresInSeconds = 0;
      if (opts.expiresIn !== undefined) {
        if (!opts.rotate) throw new ShoalError("INVALID_ARGUMENT", "--expires-in applies to a new token: add --rotate");
        expiresInSeconds = parseDurationSeconds(opts.expiresIn, "--expires-in");
        if (expiresInSeconds === 0) throw new ShoalError("INVALID_ARGUMENT", "--expires-in must be longer than 0s: leave it out for a token that never expires");
      }
      const res = await ctx.daemon().getJoinToken({ role, rotate: opts.rotate, expiresInSeconds: BigInt(expiresInSeconds) });
      if (opts.quiet) {
        ctx.io.stdout(`${res.token}\n`);
        return;
      }
      const addr = await managerAddress(ctx);
      if (opts.rotate) ctx.io.stdout(`Rotated the ${roleText} join token: the previous one no longer works.\n\n`);
      ctx.io.stdout(`To add a ${roleText} to this cluster, run the following command:\n\n` + joinCommandText(res.token, addr));
      if (res.expiresAt !== undefined) ctx.io.stdout(`\nThis token expires at ${res.expiresAt.toISOString()}.\n`);
    });

  program
    .command("unlock")
    .description("unlock a locked manager; the key is read from stdin or typed at a prompt that does not echo")
    .action(async () => {
      const unlockKey = await readUnlockKey(ctx.io.stdin, ctx.io.stderr);
      await ctx.daemon().unlock({ unlockKey });
      ctx.io.stdout("Node unlocked.\n");
    });

  program
    .command("unlock-key")
    .description("print (or rotate) the key that unlocks managers when autolock is on")
    .option("--rotate", "replace the unlock key on every manager", false)
    .option("-q, --quiet", "print only the key", false)
    .action(async (opts: { rotate: boolean; quiet: boolean }) => {
      const key = await ctx.daemon().getUnlockKey({ rotate: opts.rotate });
      if (key === "") {
        throw new ShoalError("FAILED_PRECONDITION", "autolock is off, so there is no unlock key: turn it on with `shoal update --autolock=true`");
      }
      if (opts.quiet) {
        ctx.io.stdout(`${key}\n`);
        return;
      }
      if (opts.rotate) ctx.io.stdout("Rotated the unlock key: the previous one no longer unlocks managers.\n\n");
      printUnlockKey(ctx, key);
    });

  program
    .command("update")
    .description("change cluster settings")
    .option("--autolock [true|false]", "turn autolock on or off")
    .option("--cert-expiry <duration>", "validity of node certificates, e.g. 2160h (at least 1h)")
    .action(async (opts: { autolock?: string | boolean; certExpiry?: string }) => {
      if (opts.autolock === undefined && opts.certExpiry === undefined) {
        throw new ShoalError("INVALID_ARGUMENT", "nothing to update: give --autolock=true|false or --cert-expiry DURATION");
      }
      const autolock =
        opts.autolock === undefined
          ? UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED
          : parseBoolean(opts.autolock, "--autolock")
            ? UpdateClusterRequest_Autolock.AUTOLOCK_ON
            : UpdateClusterRequest_Autolock.AUTOLOCK_OFF;
      const nodeCertExpirySeconds = opts.certExpiry === undefined ? 0n : BigInt(parseCertExpirySeconds(opts.certExpiry));
      const daemon = ctx.daemon();
      const res = await retryOnVersionConflict("the cluster", async () => {
        const cluster = await daemon.getCluster();
        return daemon.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds, autolock });
      });
      ctx.io.stdout("Cluster updated.\n");
      if (res.unlockKey !== "") {
        ctx.io.stdout("\n");
        printUnlockKey(ctx, res.unlockKey);
      }
    });

  program
    .command("info")
    .description("show this node and its cluster: node ID, cluster ID, role, state, leader, managers")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const view = infoView(await ctx.daemon().info());
      if (opts.format === "json") {
        printJson(ctx.io, view);
        return;
      }
      const leader = view.leaderNodeId === "" ? "none" : `${view.leaderNodeId}${view.leaderAddr === "" ? "" : ` (${view.leaderAddr})`}`;
      const lines: [string, string][] = [
        ["Node ID", view.nodeId],
        ["Cluster ID", view.clusterId],
        ["Role", view.role],
        ["State", view.state],
        ["Address", view.addr],
        ["Zone", view.zone || (view.clusterId === "" ? "" : "default")],
        ["Autolock", String(view.autolock)],
        ["Certificate expires", view.certNotAfter],
        ["Leader", view.clusterId === "" ? "" : leader],
        ["Managers", String(view.managers.length)],
      ];
      const width = Math.max(...lines.map(([label]) => label.length)) + 2;
      let text = lines.map(([label, value]) => `${(label + ":").padEnd(width)}${value}`.trimEnd()).join("\n") + "\n";
      for (const m of view.managers) {
        const status = m.leader ? "leader" : m.reachable ? "reachable" : "unreachable";
        text += `  ${m.nodeId}  ${m.addr}  ${status}\n`;
      }
      ctx.io.stdout(text);
    });

  program
    .command("leave")
    .description("leave the cluster")
    .option("--force", "leave even if this breaks quorum or the node is a manager", false)
    .action(async (opts: { force: boolean }) => {
      await ctx.daemon().leave({ force: opts.force });
      ctx.io.stdout("Node left the cluster.\n");
    });
}
