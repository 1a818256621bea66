// `shoal ca`: shows the root CA and a rotation in progress; `--rotate` starts one (a new root, or
// the one given with --ca-cert/--ca-key) and waits until every node holds a certificate under it,
// with a live line on a terminal; `--detach` returns at once; `--cert-expiry` as on `update`;
// `--external-ca SPEC` / `--no-external-ca` choose who signs node certificates.
import { Command } from "commander";
import { ShoalError } from "../../base/errors.js";
import { systemClock } from "../../base/clock.js";
import { UpdateClusterRequest_Autolock, type GetRootCAResponse } from "../../proto/shoal/v1/control.js";
import type { ExternalCA } from "../../proto/shoal/v1/objects.js";
import { parseCertExpirySeconds } from "../duration.js";
import { externalCaFromSpec, readPem } from "../external-ca-flag.js";
import { retryOnVersionConflict } from "../retry.js";
import { formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";

/** How often a waiting `--rotate` looks at the progress. */
export const ROTATION_POLL_MS = 500;

export interface RootCaView {
  root: { subject: string; fingerprint: string; notAfter: string };
  rotation?: {
    target: { subject: string; fingerprint: string; notAfter: string };
    nodesDone: number;
    nodesTotal: number;
    waitingFor: { nodeId: string; hostname: string; down: boolean }[];
  };
  nodeCertExpiry: string;
  /** null: the managers sign node certificates with their own key. */
  externalCa: { protocol: string; url: string; cacert: boolean } | null;
  /** false: a cluster made with `shoal init --external-ca`, whose managers hold the root certificate only. */
  rootKeyHeld: boolean;
}

function summaryView(s: { subject: string; fingerprint: string; notAfter?: Date } | undefined): RootCaView["root"] {
  return { subject: s?.subject ?? "", fingerprint: s?.fingerprint ?? "", notAfter: s?.notAfter?.toISOString() ?? "" };
}

export function rootCaView(res: GetRootCAResponse): RootCaView {
  const view: RootCaView = {
    root: summaryView(res.root),
    nodeCertExpiry: res.nodeCertExpirySeconds === 0n ? "2160h" : `${Number(res.nodeCertExpirySeconds) / 3600}h`,
    externalCa:
      res.externalCa === undefined || res.externalCa.url === ""
        ? null
        : { protocol: res.externalCa.protocol, url: res.externalCa.url, cacert: res.externalCa.caCertPem.length > 0 },
    rootKeyHeld: res.rootKeyHeld,
  };
  if (res.rotation !== undefined) {
    view.rotation = {
      target: summaryView(res.rotation.target),
      nodesDone: res.rotation.nodesDone,
      nodesTotal: res.rotation.nodesTotal,
      waitingFor: res.rotation.waitingFor.map((n) => ({ nodeId: n.nodeId, hostname: n.hostname, down: n.down })),
    };
  }
  return view;
}

function waitingText(view: NonNullable<RootCaView["rotation"]>): string {
  const names = view.waitingFor.map((n) => `${n.hostname || n.nodeId}${n.down ? " (down: bring it back or `shoal node rm` it)" : ""}`);
  return names.length === 0 ? "finishing" : `waiting for ${names.slice(0, 5).join(", ")}${names.length > 5 ? ` and ${names.length - 5} more` : ""}`;
}

function progressLine(view: NonNullable<RootCaView["rotation"]>): string {
  return `rotating root CA: ${view.nodesDone}/${view.nodesTotal} nodes done, ${waitingText(view)}`;
}

function printView(ctx: CommandContext, view: RootCaView): void {
  const lines = [
    `Root CA:        ${view.root.subject}`,
    `Fingerprint:    SHA256:${view.root.fingerprint}`,
    `Expires:        ${view.root.notAfter}`,
    `Node cert expiry: ${view.nodeCertExpiry}`,
    `Signer:         ${view.externalCa === null ? "the managers (own key)" : `external CA, ${view.externalCa.protocol} ${view.externalCa.url}${view.externalCa.cacert ? " (TLS verified with the given cacert)" : ""}`}`,
    `Root CA key:    ${view.rootKeyHeld ? "held by the managers (encrypted store)" : "none on the managers: they hold the root certificate only; the external CA holds the key"}`,
  ];
  if (view.rotation === undefined) {
    lines.push("Rotation:       none");
  } else {
    lines.push(`Rotation to:    SHA256:${view.rotation.target.fingerprint} (${view.rotation.target.subject}, expires ${view.rotation.target.notAfter})`);
    lines.push(`Progress:       ${view.rotation.nodesDone}/${view.rotation.nodesTotal} nodes, ${waitingText(view.rotation)}`);
  }
  ctx.io.stdout(lines.join("\n") + "\n");
}

interface CaOptions {
  /** A spec to set or replace the external CA; false (--no-external-ca): sign with the managers' key again. */
  externalCa?: string | false;
  rotate?: boolean;
  caCert?: string;
  caKey?: string;
  certExpiry?: string;
  detach?: boolean;
  format: OutputFormat;
}

/** Polls until the rotation is over; on a terminal rewrites one progress line. */
async function waitForRotation(ctx: CommandContext, format: OutputFormat): Promise<GetRootCAResponse> {
  const clock = ctx.io.clock ?? systemClock;
  const live = ctx.io.stdoutIsTTY === true && format === "table";
  let interrupted = false;
  const release = ctx.io.onInterrupt?.(() => (interrupted = true));
  try {
    for (;;) {
      let res: GetRootCAResponse;
      try {
        res = await ctx.daemon().getRootCa();
      } catch (err) {
        // A leader failover mid-rotation: the new leader goes on; look again.
        if (err instanceof ShoalError && (err.code === "UNAVAILABLE" || err.code === "NOT_LEADER" || err.code === "NO_QUORUM")) {
          await clock.sleep(ROTATION_POLL_MS);
          continue;
        }
        throw err;
      }
      const view = rootCaView(res);
      if (view.rotation === undefined) {
        if (live) ctx.io.stdout("\r\x1b[2K");
        return res;
      }
      if (live) ctx.io.stdout(`\r\x1b[2K${progressLine(view.rotation)}`);
      if (interrupted) {
        if (live) ctx.io.stdout("\n");
        throw new ShoalError("UNAVAILABLE", "stopped waiting; the rotation goes on (see `shoal ca`)");
      }
      await clock.sleep(ROTATION_POLL_MS);
    }
  } finally {
    release?.();
  }
}

export function registerRootCaCommand(program: Command, ctx: CommandContext): void {
  program
    .command("ca")
    .description("show the root CA and a rotation in progress; rotate it with --rotate")
    .option("--rotate", "rotate the root CA: a new one is generated unless --ca-cert and --ca-key give one")
    .option("--ca-cert <file>", "PEM root CA certificate to rotate to (with --rotate and --ca-key)")
    .option("--ca-key <file>", "PEM ECDSA P-256 key of --ca-cert")
    .option("--cert-expiry <duration>", "validity of node certificates, e.g. 2160h (at least 1h)")
    .option(
      "--external-ca <spec>",
      "have node certificates signed by an external CFSSL signer: protocol=cfssl,url=https://HOST:PORT[,cacert=FILE] (cacert verifies the signer's TLS certificate); it must sign with the cluster's root CA key",
    )
    .option("--no-external-ca", "sign node certificates with the managers' own root CA key again (refused in a cluster made with `init --external-ca`, whose managers hold no key)")
    .option("-d, --detach", "return once the rotation has started, without waiting for it")
    .addOption(formatOption())
    .action(async (opts: CaOptions) => {
      if ((opts.caCert !== undefined || opts.caKey !== undefined) && opts.rotate !== true) {
        throw new ShoalError("INVALID_ARGUMENT", "--ca-cert and --ca-key rotate the root CA: add --rotate");
      }
      if ((opts.caCert === undefined) !== (opts.caKey === undefined)) {
        throw new ShoalError("INVALID_ARGUMENT", "give both --ca-cert and --ca-key, or neither to generate a new root");
      }
      const daemon = ctx.daemon();
      if (opts.certExpiry !== undefined) {
        const nodeCertExpirySeconds = BigInt(parseCertExpirySeconds(opts.certExpiry));
        await retryOnVersionConflict("the cluster", async () => {
          const cluster = await daemon.getCluster();
          return daemon.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED });
        });
      }
      if (opts.externalCa !== undefined) {
        let externalCa: ExternalCA | undefined;
        if (opts.externalCa !== false) {
          externalCa = await externalCaFromSpec(opts.externalCa);
        }
        await retryOnVersionConflict("the cluster", async () => {
          const cluster = await daemon.getCluster();
          return daemon.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds: 0n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED, updateExternalCa: true, externalCa });
        });
      }
      let res: GetRootCAResponse;
      if (opts.rotate === true) {
        const caCertPem = opts.caCert === undefined ? Buffer.alloc(0) : await readPem(opts.caCert, "--ca-cert");
        const caKeyPem = opts.caKey === undefined ? Buffer.alloc(0) : await readPem(opts.caKey, "--ca-key");
        res = (await daemon.rotateRootCa({ caCertPem, caKeyPem })).status!;
        if (opts.detach !== true) res = await waitForRotation(ctx, opts.format);
      } else {
        res = await daemon.getRootCa();
      }
      const view = rootCaView(res);
      if (opts.format === "json") printJson(ctx.io, view);
      else printView(ctx, view);
    });
}
