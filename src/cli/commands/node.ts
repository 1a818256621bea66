// `shoal node ...`: list, inspect, remove, promote, demote and update the cluster's nodes.
import { Command, Option } from "commander";
import { ShoalError } from "../../base/errors.js";
import { NodeAvailability, NodeRole, type Node, type NodeSpec } from "../../proto/shoal/v1/objects.js";
import { collect, formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import type { DaemonClient } from "../daemon-client.js";
import { resolveNode } from "../resolve.js";
import { retryOnVersionConflict } from "../retry.js";
import { capitalize, nodeView, parseAvailability, renderTable, TASK_HEADERS, taskRows, taskView } from "../views.js";

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,127}$/;

export function parseLabel(text: string): [string, string] {
  const eq = text.indexOf("=");
  const key = eq < 0 ? text : text.slice(0, eq);
  if (eq < 0 || !LABEL_KEY.test(key)) {
    throw new ShoalError("INVALID_ARGUMENT", `label "${text}" is not KEY=VALUE with a key of letters, digits, . _ / -: e.g. --label-add zone=pci`);
  }
  return [key, text.slice(eq + 1)];
}

async function localNodeId(daemon: DaemonClient): Promise<string> {
  try {
    return (await daemon.info()).nodeId;
  } catch {
    return "";
  }
}

/** Read the node, change a copy of its spec, write it with the version read (compare-and-set). */
async function updateNodeSpec(daemon: DaemonClient, ref: string, change: (spec: NodeSpec, node: Node) => void): Promise<Node> {
  return retryOnVersionConflict(`node ${ref}`, async () => {
    const node = await resolveNode(daemon, ref);
    const spec: NodeSpec = {
      desiredRole: node.spec?.desiredRole ?? node.role,
      availability: node.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      labels: { ...(node.spec?.labels ?? {}) },
    };
    change(spec, node);
    return daemon.updateNode({ nodeId: node.id, nodeVersion: node.meta?.version ?? 0n, spec });
  });
}

export function registerNodeCommands(program: Command, ctx: CommandContext): void {
  const node = program.command("node").description("manage the cluster's nodes");

  node
    .command("ls")
    .description("list nodes (* marks this node)")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const daemon = ctx.daemon();
      const [nodes, selfId] = await Promise.all([daemon.listNodes(), localNodeId(daemon)]);
      const views = nodes.map((n) => nodeView(n, selfId)).sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id));
      if (opts.format === "json") {
        printJson(ctx.io, views);
        return;
      }
      ctx.io.stdout(
        renderTable(
          ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
          views.map((v) => [v.self ? `${v.id} *` : v.id, v.hostname, capitalize(v.status), capitalize(v.availability), capitalize(v.managerStatus)]),
        ),
      );
    });

  node
    .command("inspect")
    .description("show one node as JSON")
    .argument("<node>", "node ID, unique ID prefix or hostname")
    .action(async (ref: string) => {
      const daemon = ctx.daemon();
      const found = await resolveNode(daemon, ref);
      printJson(ctx.io, nodeView(found, await localNodeId(daemon)));
    });

  node
    .command("ps")
    .description("list the tasks of a node (default: this node), with the reason a task is pending or failed")
    .argument("[node]", "node ID, unique ID prefix or hostname")
    .option("--no-trunc", "do not truncate IDs and errors")
    .addOption(formatOption())
    .action(async (ref: string | undefined, opts: { format: OutputFormat; trunc: boolean }) => {
      const daemon = ctx.daemon();
      const nodes = await daemon.listNodes();
      const nodeId = ref === undefined ? await localNodeId(daemon) : (await resolveNode(daemon, ref)).id;
      if (nodeId === "") throw new ShoalError("UNAVAILABLE", "cannot tell which node this is: name the node, e.g. shoal node ps NODE");
      const hostnameOf = (id: string): string => nodes.find((n) => n.id === id)?.description?.hostname ?? "";
      const views = (await daemon.listTasks({ serviceId: "", nodeId })).map((t) => taskView(t, hostnameOf));
      if (opts.format === "json") printJson(ctx.io, views);
      else ctx.io.stdout(renderTable(TASK_HEADERS, taskRows(views, { nowMs: Date.now(), noTrunc: !opts.trunc })));
    });

  node
    .command("rm")
    .description("remove a node and revoke its certificates")
    .argument("<node>", "node ID, unique ID prefix or hostname")
    .option("--force", "remove a node that is down; a down manager is demoted and removed in one step", false)
    .action(async (ref: string, opts: { force: boolean }) => {
      const daemon = ctx.daemon();
      const found = await resolveNode(daemon, ref);
      await daemon.removeNode({ nodeId: found.id, force: opts.force });
      ctx.io.stdout(`${found.id}\n`);
    });

  for (const [name, role] of [
    ["promote", NodeRole.NODE_ROLE_MANAGER],
    ["demote", NodeRole.NODE_ROLE_WORKER],
  ] as const) {
    node
      .command(name)
      .description(role === NodeRole.NODE_ROLE_MANAGER ? "make a worker a manager" : "make a manager a worker")
      .argument("<node>", "node ID, unique ID prefix or hostname")
      .action(async (ref: string) => {
        const updated = await updateNodeSpec(ctx.daemon(), ref, (spec) => {
          spec.desiredRole = role;
        });
        ctx.io.stdout(`Node ${updated.id} ${name === "promote" ? "promoted to a manager" : "demoted to a worker"}.\n`);
      });
  }

  node
    .command("update")
    .description("change a node's labels or availability")
    .argument("<node>", "node ID, unique ID prefix or hostname")
    .option("--label-add <key=value>", "add or replace a label (zone=Z sets the security zone); repeatable", collect, [])
    .option("--label-rm <key>", "remove a label; repeatable", collect, [])
    .addOption(new Option("--availability <availability>", "active, pause or drain").choices(["active", "pause", "drain"]))
    .action(async (ref: string, opts: { labelAdd: string[]; labelRm: string[]; availability?: string }) => {
      const additions = opts.labelAdd.map(parseLabel);
      if (additions.length === 0 && opts.labelRm.length === 0 && opts.availability === undefined) {
        throw new ShoalError("INVALID_ARGUMENT", "nothing to update: give --label-add, --label-rm or --availability");
      }
      const updated = await updateNodeSpec(ctx.daemon(), ref, (spec) => {
        for (const key of opts.labelRm) delete spec.labels[key];
        for (const [key, value] of additions) spec.labels[key] = value;
        if (opts.availability !== undefined) spec.availability = parseAvailability(opts.availability);
      });
      ctx.io.stdout(`${updated.id}\n`);
    });
}
