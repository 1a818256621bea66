// Name-or-ID resolution, as docker does it: an exact ID wins, then an exact name (hostname for
// nodes), then a unique ID prefix. Ambiguity is an error that asks for the full ID.
import { ShoalError } from "../base/errors.js";
import type { Node, Secret, Service } from "../proto/shoal/v1/objects.js";
import type { DaemonClient } from "./daemon-client.js";

function pick<T extends { id: string }>(items: T[], ref: string, nameOf: (item: T) => string, kind: string, hint: string): T {
  if (ref.length === 0) throw new ShoalError("INVALID_ARGUMENT", `no ${kind} was named: give a ${kind} name or ID`);
  const byId = items.find((item) => item.id === ref);
  if (byId !== undefined) return byId;
  const byName = items.filter((item) => nameOf(item) === ref);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) {
    throw new ShoalError("INVALID_ARGUMENT", `${byName.length} ${kind}s are named ${ref}: use the full ${kind} ID instead`);
  }
  const byPrefix = items.filter((item) => item.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) {
    throw new ShoalError("INVALID_ARGUMENT", `${byPrefix.length} ${kind}s have IDs starting with ${ref}: give more characters of the ID`);
  }
  throw new ShoalError("NOT_FOUND", `no ${kind} matches ${ref}: ${hint}`);
}

export async function resolveNode(daemon: DaemonClient, ref: string): Promise<Node> {
  return pick(await daemon.listNodes(), ref, (n) => n.description?.hostname ?? "", "node", "list nodes with `shoal node ls`");
}

export async function resolveService(daemon: DaemonClient, ref: string): Promise<Service> {
  return pick(await daemon.listServices(), ref, (s) => s.spec?.name ?? "", "service", "list services with `shoal service ls`");
}

export async function resolveSecret(daemon: DaemonClient, ref: string): Promise<Secret> {
  return pick(await daemon.listSecrets(), ref, (s) => s.spec?.name ?? "", "secret", "list secrets with `shoal secret ls`");
}

/** Like resolveSecret, against a list fetched once, for commands that name several secrets. */
export function pickSecret(secrets: Secret[], ref: string): Secret {
  return pick(secrets, ref, (s) => s.spec?.name ?? "", "secret", "create it first with `shoal secret create`");
}
