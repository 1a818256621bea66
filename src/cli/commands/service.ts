// `shoal service ...`: create, list, inspect, scale, update and remove services, and list their tasks.
import { Command } from "commander";
import { ShoalError } from "../../base/errors.js";
import { MAX_REPLICAS } from "../../state/limits.js";
import type { Secret, SecretReference, Service } from "../../proto/shoal/v1/objects.js";
import { ServiceSpec, TaskState } from "../../proto/shoal/v1/objects.js";
import { collect, formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import type { DaemonClient } from "../daemon-client.js";
import { pickSecret, resolveService } from "../resolve.js";
import { retryOnVersionConflict } from "../retry.js";
import { renderTable, serviceView, taskView } from "../views.js";


export function parseReplicas(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_REPLICAS) {
    throw new ShoalError("INVALID_ARGUMENT", `replicas "${text}" is not a whole number from 0 to ${MAX_REPLICAS}`);
  }
  return Number(text);
}

/** `--secret NAME` or `--secret source=NAME,target=FILE` (the file name under the task's secrets dir). */
function parseSecretFlag(text: string): { source: string; target: string } {
  if (!text.includes("=")) return { source: text, target: text };
  const fields = new Map<string, string>();
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ShoalError("INVALID_ARGUMENT", `--secret "${text}" must be NAME or source=NAME,target=FILE`);
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const source = fields.get("source") ?? fields.get("src") ?? "";
  const target = fields.get("target") ?? source;
  if (source === "" || /[\/\\]|^\.\.?$/.test(target)) {
    throw new ShoalError("INVALID_ARGUMENT", `--secret "${text}" must be NAME or source=NAME,target=FILE with a plain file name`);
  }
  return { source, target };
}

function secretReferences(flags: string[], secrets: Secret[]): SecretReference[] {
  return flags.map((flag) => {
    const { source, target } = parseSecretFlag(flag);
    const secret = pickSecret(secrets, source);
    return { secretId: secret.id, secretName: secret.spec?.name ?? source, target };
  });
}

function parseEnv(text: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(text)) throw new ShoalError("INVALID_ARGUMENT", `--env "${text}" is not NAME=VALUE`);
  return text;
}

function parseScale(text: string): [string, number] {
  const eq = text.lastIndexOf("=");
  if (eq <= 0) throw new ShoalError("INVALID_ARGUMENT", `"${text}" is not SERVICE=REPLICAS: e.g. shoal service scale web=3`);
  return [text.slice(0, eq), parseReplicas(text.slice(eq + 1))];
}

/** A deep copy of the service's spec (fromPartial copies every nested message, list and map). */
function cloneSpec(service: Service): ServiceSpec {
  return ServiceSpec.fromPartial(service.spec ?? {});
}

async function updateServiceSpec(daemon: DaemonClient, ref: string, change: (spec: ServiceSpec) => void | Promise<void>): Promise<Service> {
  return retryOnVersionConflict(`service ${ref}`, async () => {
    const service = await resolveService(daemon, ref);
    const spec = cloneSpec(service);
    await change(spec);
    return daemon.updateService({ serviceId: service.id, serviceVersion: service.meta?.version ?? 0n, spec, rollback: false });
  });
}

async function hostnames(daemon: DaemonClient): Promise<(nodeId: string) => string> {
  try {
    const byId = new Map((await daemon.listNodes()).map((n) => [n.id, n.description?.hostname ?? ""]));
    return (id) => byId.get(id) ?? "";
  } catch {
    return () => "";
  }
}

export function registerServiceCommands(program: Command, ctx: CommandContext): void {
  const service = program.command("service").description("manage services");

  service
    .command("create")
    .description("create a service; the command to run follows --")
    .requiredOption("--name <name>", "service name")
    .option("--replicas <n>", "number of tasks", "1")
    .option("--constraint <expr>", "placement constraint, e.g. node.labels.zone==pci; repeatable", collect, [])
    .option("--zone <zone>", "security zone: tasks run only on nodes of this zone")
    .option("--secret <name>", "secret to give the tasks (NAME or source=NAME,target=FILE); repeatable", collect, [])
    .option("--image <ref>", "image reference")
    .option("--env <name=value>", "environment variable; repeatable", collect, [])
    .option("--label <key=value>", "service label; repeatable", collect, [])
    .argument("[command...]", "command and arguments, after --")
    .action(
      async (
        command: string[],
        opts: { name: string; replicas: string; constraint: string[]; zone?: string; secret: string[]; image?: string; env: string[]; label: string[] },
      ) => {
        if (command.length === 0 && opts.image === undefined) {
          throw new ShoalError("INVALID_ARGUMENT", "nothing to run: give a command after -- (e.g. -- sleep 3600) or an --image");
        }
        const replicas = parseReplicas(opts.replicas);
        const env = opts.env.map(parseEnv);
        const labels: Record<string, string> = {};
        for (const label of opts.label) {
          const eq = label.indexOf("=");
          if (eq <= 0) throw new ShoalError("INVALID_ARGUMENT", `--label "${label}" is not KEY=VALUE`);
          labels[label.slice(0, eq)] = label.slice(eq + 1);
        }
        const daemon = ctx.daemon();
        const secrets = opts.secret.length === 0 ? [] : secretReferences(opts.secret, await daemon.listSecrets());
        const created = await daemon.createService({
          spec: ServiceSpec.fromPartial({
            name: opts.name,
            labels,
            replicas,
            constraints: opts.constraint,
            zone: opts.zone ?? "",
            container: { image: opts.image ?? "", command: command.slice(0, 1), args: command.slice(1), env, secrets },
          }),
        });
        ctx.io.stdout(`${created.id}\n`);
      },
    );

  service
    .command("ls")
    .description("list services")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const daemon = ctx.daemon();
      const [services, tasks] = await Promise.all([daemon.listServices(), daemon.listTasks({ serviceId: "", nodeId: "" })]);
      const running = new Map<string, number>();
      for (const task of tasks) {
        if (task.status?.state === TaskState.TASK_STATE_RUNNING) running.set(task.serviceId, (running.get(task.serviceId) ?? 0) + 1);
      }
      const views = services.map((s) => serviceView(s, running.get(s.id) ?? 0)).sort((a, b) => a.name.localeCompare(b.name));
      if (opts.format === "json") {
        printJson(ctx.io, views);
        return;
      }
      ctx.io.stdout(
        renderTable(
          ["ID", "NAME", "REPLICAS", "ZONE", "IMAGE", "COMMAND"],
          views.map((v) => [v.id, v.name, `${v.runningTasks}/${v.replicas}`, v.zone, v.image, [...v.command, ...v.args].join(" ")]),
        ),
      );
    });

  service
    .command("ps")
    .description("list a service's tasks")
    .argument("<service>", "service name or ID")
    .addOption(formatOption())
    .action(async (ref: string, opts: { format: OutputFormat }) => {
      const daemon = ctx.daemon();
      const found = await resolveService(daemon, ref);
      const [tasks, hostnameOf] = await Promise.all([daemon.listTasks({ serviceId: found.id, nodeId: "" }), hostnames(daemon)]);
      const views = tasks.map((t) => taskView(t, hostnameOf)).sort((a, b) => a.slot - b.slot || a.id.localeCompare(b.id));
      if (opts.format === "json") {
        printJson(ctx.io, views);
        return;
      }
      ctx.io.stdout(
        renderTable(
          ["ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"],
          views.map((v) => [v.id, v.name, v.nodeHostname || v.nodeId, v.desiredState, v.state, v.error]),
        ),
      );
    });

  service
    .command("inspect")
    .description("show one service as JSON")
    .argument("<service>", "service name or ID")
    .action(async (ref: string) => {
      const daemon = ctx.daemon();
      const found = await resolveService(daemon, ref);
      const tasks = await daemon.listTasks({ serviceId: found.id, nodeId: "" });
      printJson(ctx.io, serviceView(found, tasks.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length));
    });

  service
    .command("scale")
    .description("set the number of replicas: shoal service scale web=3 [api=2 ...]")
    .argument("<service=replicas...>", "service name or ID, =, number of replicas")
    .action(async (pairs: string[]) => {
      const daemon = ctx.daemon();
      for (const [ref, replicas] of pairs.map(parseScale)) {
        await updateServiceSpec(daemon, ref, (spec) => {
          spec.replicas = replicas;
        });
        ctx.io.stdout(`${ref} scaled to ${replicas}\n`);
      }
    });

  service
    .command("update")
    .description("change a service; a new command may follow --")
    .argument("<service>", "service name or ID")
    .argument("[command...]", "new command and arguments, after --")
    .option("--replicas <n>", "number of tasks")
    .option("--image <ref>", "image reference")
    .option("--zone <zone>", "security zone")
    .option("--constraint-add <expr>", "add a placement constraint; repeatable", collect, [])
    .option("--constraint-rm <expr>", "remove a placement constraint; repeatable", collect, [])
    .option("--secret-add <name>", "add a secret (NAME or source=NAME,target=FILE); repeatable", collect, [])
    .option("--secret-rm <name>", "remove a secret by name; repeatable", collect, [])
    .option("--env-add <name=value>", "add or replace an environment variable; repeatable", collect, [])
    .option("--env-rm <name>", "remove an environment variable; repeatable", collect, [])
    .action(
      async (
        ref: string,
        command: string[],
        opts: {
          replicas?: string;
          image?: string;
          zone?: string;
          constraintAdd: string[];
          constraintRm: string[];
          secretAdd: string[];
          secretRm: string[];
          envAdd: string[];
          envRm: string[];
        },
      ) => {
        const replicas = opts.replicas === undefined ? undefined : parseReplicas(opts.replicas);
        const envAdd = opts.envAdd.map(parseEnv);
        const changes =
          command.length +
          opts.constraintAdd.length +
          opts.constraintRm.length +
          opts.secretAdd.length +
          opts.secretRm.length +
          envAdd.length +
          opts.envRm.length +
          [replicas, opts.image, opts.zone].filter((v) => v !== undefined).length;
        if (changes === 0) throw new ShoalError("INVALID_ARGUMENT", "nothing to update: give a flag such as --replicas or --image, or a command after --");
        const daemon = ctx.daemon();
        const secrets = opts.secretAdd.length === 0 ? [] : await daemon.listSecrets();
        const updated = await updateServiceSpec(daemon, ref, (spec) => {
          const container = spec.container!;
          if (replicas !== undefined) spec.replicas = replicas;
          if (opts.image !== undefined) container.image = opts.image;
          if (opts.zone !== undefined) spec.zone = opts.zone;
          if (command.length > 0) {
            container.command = command.slice(0, 1);
            container.args = command.slice(1);
          }
          spec.constraints = spec.constraints.filter((c) => !opts.constraintRm.includes(c));
          for (const c of opts.constraintAdd) if (!spec.constraints.includes(c)) spec.constraints.push(c);
          container.secrets = container.secrets.filter((s) => !opts.secretRm.includes(s.secretName) && !opts.secretRm.includes(s.secretId));
          for (const ref of secretReferences(opts.secretAdd, secrets)) {
            container.secrets = container.secrets.filter((s) => s.target !== ref.target);
            container.secrets.push(ref);
          }
          const envName = (e: string): string => e.slice(0, Math.max(0, e.indexOf("=")));
          const dropped = new Set([...opts.envRm, ...envAdd.map(envName)]);
          container.env = [...container.env.filter((e) => !dropped.has(envName(e))), ...envAdd];
        });
        ctx.io.stdout(`${updated.id}\n`);
      },
    );

  service
    .command("rm")
    .description("remove services and their tasks")
    .argument("<service...>", "service names or IDs")
    .action(async (refs: string[]) => {
      const daemon = ctx.daemon();
      for (const ref of refs) {
        const found = await resolveService(daemon, ref);
        await daemon.removeService(found.id);
        ctx.io.stdout(`${found.spec?.name ?? found.id}\n`);
      }
    });
}
