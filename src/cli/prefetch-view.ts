// What `shoal image prefetch status` prints, as pure functions of the leader's job views: the JSON
// view (camelCase, numbers as numbers, ISO times, every field present), the table (per job, then its
// nodes), human-readable sizes and ages, and the redraw a live display writes on a terminal. Every
// string that came from the store or a node (image, messages, hostnames, zones) is escaped as in
// views.ts, so a node's error message can neither drive the terminal nor forge a row.
import { escapeUnsafeChars as shown } from "../base/text.js";
import type { PrefetchJobStatus, PrefetchNodeStatus } from "../proto/shoal/v1/control.js";
import { renderTable } from "./views.js";

/** Job states after which nothing changes any more (the live display stops when every job is in one). */
export const ENDED_JOB_STATES: ReadonlySet<string> = new Set(["done", "failed", "ended"]);

export interface PrefetchNodeView {
  nodeId: string;
  /** "" when the node is not (or no longer) in ListNodes. */
  hostname: string;
  zone: string;
  role: string;
  state: string;
  bytesFromPeers: number;
  bytesFromRegistry: number;
  /**
   * Fraction of the image's bytes this node has, 0 to 1: (peers + registry) / size, at most 1. A node
   * that is done counts as 1 (it may have held some blobs already and fetched fewer bytes); a job of
   * unknown (zero) size counts 0 until the node is done.
   */
  progress: number;
  message: string;
}

export interface PrefetchJobView {
  jobId: string;
  serviceId: string;
  /** "" when the service no longer exists. */
  serviceName: string;
  specVersion: number;
  image: string;
  manifestDigest: string;
  state: string;
  sizeBytes: number;
  startedAt: string;
  /** "" while the job runs. */
  endedAt: string;
  message: string;
  nodes: PrefetchNodeView[];
}

function iso(date: Date | undefined): string {
  return date === undefined ? "" : date.toISOString();
}

export function nodeProgress(node: Pick<PrefetchNodeStatus, "state" | "bytesFromPeers" | "bytesFromRegistry">, sizeBytes: bigint): number {
  if (node.state === "done") return 1;
  if (sizeBytes <= 0n) return 0;
  const have = node.bytesFromPeers + node.bytesFromRegistry;
  return have >= sizeBytes ? 1 : Number(have) / Number(sizeBytes);
}

const ROLE_ORDER: Record<string, number> = { seed: 0, peer: 1 };

/** Nodes by zone, seeds first, then by hostname (or ID). */
function byZoneRoleName(a: PrefetchNodeView, b: PrefetchNodeView): number {
  return (
    a.zone.localeCompare(b.zone) ||
    (ROLE_ORDER[a.role] ?? 2) - (ROLE_ORDER[b.role] ?? 2) ||
    (a.hostname || a.nodeId).localeCompare(b.hostname || b.nodeId) ||
    a.nodeId.localeCompare(b.nodeId)
  );
}

/**
 * A job as printed. `serviceNameOf` and `hostnameOf` answer "" for an ID they do not know (a
 * service removed since, a node gone from the store).
 */
export function prefetchJobView(job: PrefetchJobStatus, serviceNameOf: (serviceId: string) => string, hostnameOf: (nodeId: string) => string): PrefetchJobView {
  return {
    jobId: shown(job.jobId),
    serviceId: shown(job.serviceId),
    serviceName: shown(serviceNameOf(job.serviceId)),
    specVersion: Number(job.specVersion),
    image: shown(job.image),
    manifestDigest: shown(job.manifestDigest),
    state: shown(job.state),
    sizeBytes: Number(job.sizeBytes),
    startedAt: iso(job.startedAt),
    endedAt: iso(job.endedAt),
    message: shown(job.message),
    nodes: job.nodes
      .map((n) => ({
        nodeId: shown(n.nodeId),
        hostname: shown(hostnameOf(n.nodeId)),
        zone: shown(n.zone || "default"),
        role: shown(n.role),
        state: shown(n.state),
        bytesFromPeers: Number(n.bytesFromPeers),
        bytesFromRegistry: Number(n.bytesFromRegistry),
        progress: nodeProgress(n, job.sizeBytes),
        message: shown(n.message),
      }))
      .sort(byZoneRoleName),
  };
}

export function jobEnded(view: Pick<PrefetchJobView, "state">): boolean {
  return ENDED_JOB_STATES.has(view.state);
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** Bytes in binary units, one decimal above 1 KiB: 0 → "0 B", 1536 → "1.5 KiB", 64 MiB → "64.0 MiB". */
export function bytesText(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return `${Math.max(0, Math.trunc(bytes) || 0)} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // 1023.96 KiB would print as "1024.0 KiB": say "1.0 MiB" instead.
  if (value.toFixed(1) === "1024.0" && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** "42%" (rounded down, so 100% means complete); "-" for a node of a job whose size is not known yet. */
export function progressText(node: Pick<PrefetchNodeView, "progress" | "state">, sizeBytes: number): string {
  if (sizeBytes <= 0 && node.state !== "done") return "-";
  return `${Math.floor(node.progress * 100)}%`;
}

/** How long ago a job started, compact: "0s", "42s", "3m12s", "2h5m", "3d4h"; "" without a start. */
export function ageText(startedIso: string, nowMs: number): string {
  if (startedIso === "") return "";
  const s = Math.max(0, Math.floor((nowMs - Date.parse(startedIso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`;
}

export const PREFETCH_JOB_HEADERS = ["SERVICE", "VERSION", "IMAGE", "DIGEST", "STATE", "SIZE", "AGE", "MESSAGE"];
export const PREFETCH_NODE_HEADERS = ["NODE", "ZONE", "ROLE", "STATE", "FROM PEERS", "FROM REGISTRY", "PROGRESS", "MESSAGE"];

/** A sha256 digest cut to 12 hex characters, as Docker shows image IDs. */
function shortDigest(digest: string): string {
  const hex = /^sha256:([0-9a-f]{12})/.exec(digest)?.[1];
  return hex ?? digest;
}

export function prefetchNodeRow(node: PrefetchNodeView, sizeBytes: number): string[] {
  return [
    node.hostname || node.nodeId.slice(0, 12),
    node.zone,
    node.role,
    node.state,
    bytesText(node.bytesFromPeers),
    bytesText(node.bytesFromRegistry),
    progressText(node, sizeBytes),
    node.message,
  ];
}

export function prefetchJobRow(job: PrefetchJobView, nowMs: number): string[] {
  return [
    job.serviceName || job.serviceId.slice(0, 12),
    String(job.specVersion),
    job.image,
    shortDigest(job.manifestDigest),
    job.state,
    job.sizeBytes > 0 ? bytesText(job.sizeBytes) : "-",
    ageText(job.startedAt, nowMs),
    job.message,
  ];
}

/** Each job as a one-row table, its nodes as a table indented under it; a blank line between jobs. */
export function renderPrefetchStatus(jobs: readonly PrefetchJobView[], nowMs: number): string {
  if (jobs.length === 0) return "No prefetch jobs.\n";
  return jobs
    .map((job) => {
      const head = renderTable(PREFETCH_JOB_HEADERS, [prefetchJobRow(job, nowMs)]);
      if (job.nodes.length === 0) return `${head}  (no target nodes)\n`;
      const nodes = renderTable(PREFETCH_NODE_HEADERS, job.nodes.map((n) => prefetchNodeRow(n, job.sizeBytes)));
      return head + nodes.replace(/^(?=.)/gm, "  ");
    })
    .join("\n");
}

/**
 * What a live display writes to replace its previous frame of `previousRows` lines: the cursor up to
 * the frame's first line, the screen cleared below it, the new frame. Lines of a frame that is not
 * the last are cut to `columns`, so that none wraps and the row count stays exact; the last frame is
 * written whole.
 */
export function redraw(previousRows: number, text: string, options: { columns?: number; final: boolean }): { output: string; rows: number } {
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  const width = options.columns !== undefined && options.columns > 1 ? options.columns : undefined;
  const cut = (line: string): string => {
    if (options.final || width === undefined) return line;
    const chars = Array.from(line);
    return chars.length <= width ? line : `${chars.slice(0, width - 1).join("")}…`;
  };
  const erase = previousRows > 0 ? `\r\x1b[${previousRows}A\x1b[J` : "";
  return { output: erase + lines.map(cut).join("\n") + "\n", rows: lines.length };
}
