// `shoal service ...`: create, list, inspect, scale, update, roll back and remove services, and list
// their tasks. The workload flags (limits, restart policy, update config, ...) are in service-flags.ts.
import { Command, Option } from "commander";
import { ShoalError } from "../../base/errors.js";
import { NetworkMode, ServiceMode, ServiceSpec, type Secret, type SecretReference, type Service } from "../../proto/shoal/v1/objects.js";
import { collect, formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import type { DaemonClient } from "../daemon-client.js";
import { dockerConfigLogin } from "../docker-config.js";
import { parseImageReference } from "../../oci/reference.js";
import { pickSecret, resolveService } from "../resolve.js";
import { retryOnVersionConflict } from "../retry.js";
import { registerLogs } from "./service-logs.js";
import { watchService, type WatchMode } from "./service-watch.js";
import {
  addWorkloadOptions,
  applyWorkloadPatch,
  parseConstraintFlag,
  parseEnv,
  parseMode,
  parseReplicas,
  parseSecretFlag,
  parseWorkloadFlags,
  type WorkloadFlagValues,
} from "../service-flags.js";
import { renderTable, SERVICE_HEADERS, serviceInspectView, serviceRow, serviceView, TASK_HEADERS, taskRows, taskView } from "../views.js";

const OUT_OF_SCOPE_HELP = `
Networking: a task has its own network namespace with loopback only, unless --network host shares
the host's network (an explicit opt-in that \`service inspect\` and \`service ps\` show). Overlay
networks and published ports are out of scope.`;

const PROGRESS_HELP = `
Progress: the service ID is printed first, on stdout. On a terminal the command then shows every
task (its state; while PREPARING, its image prefetch progress) and the prefetch totals, redrawn
until each task of the new spec that should run is RUNNING (exit 0), a task of it fails or is
rejected, or its update pauses or is rolled back (the reason on stderr, exit 1), or 10 minutes
pass (exit 3). Ctrl-C stops watching (exit 0); the service stays and its tasks go on.
When stdout is not a terminal it returns at once, as scripts that capture the ID expect; --wait
waits there too, printing one line per task state change on stderr (stdout keeps only the ID).
--detach (-d) returns at once everywhere.
`;

const REGISTRY_AUTH_HELP = `
--with-registry-auth: the login for the image's registry is read from your Docker config
($DOCKER_CONFIG/config.json, else ~/.docker/config.json: "auth", or "username" and "password"), as
\`docker\` reads it, and stored on the managers (sealed in their store, never sent to a worker's
disk; the registry checks it first) before the service is written. A login kept by a credential
helper (credsStore, credHelpers) is refused: store it with \`shoal registry login\` instead.`;

interface ProgressFlags {
  detach?: boolean;
  wait?: boolean;
  withRegistryAuth?: boolean;
}

function addProgressOptions(command: Command): Command {
  return command
    .option("-d, --detach", "return once the service is written, without waiting for its tasks")
    .option("--wait", "wait for the tasks also when stdout is not a terminal (progress lines on stderr)")
    .option("--with-registry-auth", "store the login for the image's registry from your Docker config on the managers first")
    .addHelpText("after", PROGRESS_HELP + REGISTRY_AUTH_HELP);
}

/**
 * How to watch after the call (undefined: return at once). Checked before any call. Docker waits
 * when piped too; we do not by default, because scripts and our own e2e tests and demo run the CLI
 * without a terminal, capture the ID and poll `service ps` themselves, and some of them create or
 * update services whose tasks are meant to fail (a rolling update to a failing spec) or never run
 * (no node of the zone): waiting there would turn those steps into non-zero exits or 10-minute
 * stalls. DESIGN.md §5 asks long operations to "stay quiet when piped". --wait opts in.
 */
function watchMode(ctx: CommandContext, flags: ProgressFlags): WatchMode | undefined {
  if (flags.detach === true && flags.wait === true) throw new ShoalError("INVALID_ARGUMENT", "--detach and --wait contradict each other: give one of them");
  if (flags.detach === true) return undefined;
  if (ctx.io.stdoutIsTTY === true) return "live";
  return flags.wait === true ? "lines" : undefined;
}

/** The registry part of a service's image, for --with-registry-auth. */
function imageRegistry(image: string | undefined, what: string): string {
  if (image === undefined || image === "") {
    throw new ShoalError("INVALID_ARGUMENT", `--with-registry-auth needs an image, and ${what} runs a process: give --image`);
  }
  return parseImageReference(image).registry;
}

/**
 * Stores the operator's Docker login for `registry` on the managers (RegistryLogin: the registry is
 * checked first), keeping the registry CA the managers already hold for it. The password goes only
 * into the request and is zeroed after; nothing of it is printed.
 */
async function storeRegistryLogin(ctx: CommandContext, daemon: DaemonClient, login: { registry: string; username: string; password: Buffer }): Promise<void> {
  try {
    const known = (await daemon.listRegistries()).find((r) => r.registry === login.registry);
    const stored = await daemon.registryLogin({ registry: login.registry, username: login.username, password: login.password, caPem: known?.caPem ?? "" });
    ctx.io.stderr(`Login to ${stored.registry} as ${stored.username} stored on the managers.\n`);
  } finally {
    login.password.fill(0);
  }
}

function secretReferences(flags: { source: string; target: string }[], secrets: Secret[]): SecretReference[] {
  return flags.map(({ source, target }) => {
    const secret = pickSecret(secrets, source);
    return { secretId: secret.id, secretName: secret.spec?.name ?? source, target };
  });
}

function parseScale(text: string): [string, number] {
  const eq = text.lastIndexOf("=");
  if (eq <= 0) throw new ShoalError("INVALID_ARGUMENT", `"${text}" is not SERVICE=REPLICAS: e.g. shoal service scale web=3`);
  return [text.slice(0, eq), parseReplicas(text.slice(eq + 1))];
}

function parseLabels(flags: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const label of flags) {
    const eq = label.indexOf("=");
    if (eq <= 0) throw new ShoalError("INVALID_ARGUMENT", `--label "${label}" is not KEY=VALUE`);
    labels[label.slice(0, eq)] = label.slice(eq + 1);
  }
  return labels;
}

/** A deep copy of the service's spec (fromPartial copies every nested message, list and map). */
function cloneSpec(service: Service): ServiceSpec {
  return ServiceSpec.fromPartial(service.spec ?? {});
}

/** Read, change, write (retried on a version conflict); the service after, and as it was read. */
async function updateServiceSpec(daemon: DaemonClient, ref: string, change: (spec: ServiceSpec) => void | Promise<void>): Promise<{ service: Service; before: Service }> {
  return retryOnVersionConflict(`service ${ref}`, async () => {
    const before = await resolveService(daemon, ref);
    const spec = cloneSpec(before);
    await change(spec);
    const service = await daemon.updateService({ serviceId: before.id, serviceVersion: before.meta?.version ?? 0n, spec, rollback: false });
    return { service, before };
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

function warnHostNetwork(ctx: CommandContext, spec: ServiceSpec): void {
  if (spec.container?.network === NetworkMode.NETWORK_MODE_HOST) {
    ctx.io.stderr(`note: service ${spec.name} uses the host's network: its tasks are not network-isolated\n`);
  }
}

interface CreateFlags extends WorkloadFlagValues, ProgressFlags {
  name: string;
  mode?: string;
  constraint: string[];
  secret: string[];
  env: string[];
  label: string[];
}

function registerCreate(service: Command, ctx: CommandContext): void {
  const create = service
    .command("create")
    .description("create a service; the command to run follows --")
    .requiredOption("--name <name>", "service name")
    .addOption(new Option("--mode <mode>", "replicated (--replicas tasks) or global (one task per eligible node)"))
    .option("--constraint <expr>", "placement constraint, e.g. node.labels.tier==front or engine.labels.disk==ssd; repeatable", collect, [])
    .option("--secret <secret>", "secret for the tasks: NAME[,target=FILE]; repeatable", collect, [])
    .option("--env <name=value>", "environment variable; repeatable", collect, [])
    .option("--label <key=value>", "service label; repeatable", collect, []);
  addProgressOptions(addWorkloadOptions(create, false))
    .argument("[command...]", "command and arguments, after --")
    .addHelpText("after", OUT_OF_SCOPE_HELP)
    .action(async (command: string[], opts: CreateFlags) => {
      if (command.length === 0 && opts.image === undefined) {
        throw new ShoalError("INVALID_ARGUMENT", "nothing to run: give a command after -- (e.g. -- sleep 3600) or an --image");
      }
      const watch = watchMode(ctx, opts);
      const mode = opts.mode === undefined ? undefined : parseMode(opts.mode);
      const patch = parseWorkloadFlags(opts);
      const env = opts.env.map((e) => parseEnv(e));
      const labels = parseLabels(opts.label);
      const secretFlags = opts.secret.map((text) => parseSecretFlag(text, "--secret"));
      opts.constraint.forEach(parseConstraintFlag);
      const spec = ServiceSpec.fromPartial({ name: opts.name, labels, mode, replicas: 1, constraints: opts.constraint, zone: "", container: { env } });
      if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL) spec.replicas = 0;
      applyWorkloadPatch(spec, patch);
      spec.container!.command = command.slice(0, 1);
      spec.container!.args = command.slice(1);
      // Read before any call: without a login there, nothing is written.
      const login = opts.withRegistryAuth === true ? await dockerConfigLogin(ctx.io.env, imageRegistry(spec.container?.image, `service ${opts.name}`)) : undefined;
      try {
        const daemon = ctx.daemon();
        if (secretFlags.length > 0) spec.container!.secrets = secretReferences(secretFlags, await daemon.listSecrets());
        if (login !== undefined) await storeRegistryLogin(ctx, daemon, login);
        const created = await daemon.createService({ spec });
        warnHostNetwork(ctx, spec);
        ctx.io.stdout(`${created.id}\n`);
        if (watch !== undefined) await watchService(ctx, daemon, { service: created, mode: watch });
      } finally {
        login?.password.fill(0);
      }
    });
}

interface UpdateFlags extends WorkloadFlagValues, ProgressFlags {
  constraintAdd: string[];
  constraintRm: string[];
  secretAdd: string[];
  secretRm: string[];
  envAdd: string[];
  envRm: string[];
}

function registerUpdate(service: Command, ctx: CommandContext): void {
  const update = service
    .command("update")
    .description("change a service (its tasks are replaced by a rolling update); a new command may follow --")
    .argument("<service>", "service name or ID")
    .argument("[command...]", "new command and arguments, after --")
    .option("--constraint-add <expr>", "add a placement constraint; repeatable", collect, [])
    .option("--constraint-rm <expr>", "remove a placement constraint; repeatable", collect, [])
    .option("--secret-add <secret>", "add a secret: NAME[,target=FILE]; repeatable", collect, [])
    .option("--secret-rm <name>", "remove a secret by name or ID; repeatable", collect, [])
    .option("--env-add <name=value>", "add or replace an environment variable; repeatable", collect, [])
    .option("--env-rm <name>", "remove an environment variable; repeatable", collect, []);
  addProgressOptions(addWorkloadOptions(update, true))
    .addHelpText("after", OUT_OF_SCOPE_HELP)
    .action(async (ref: string, command: string[], opts: UpdateFlags) => {
      const patch = parseWorkloadFlags(opts);
      const envAdd = opts.envAdd.map((e) => parseEnv(e, "--env-add"));
      const secretAdd = opts.secretAdd.map((text) => parseSecretFlag(text, "--secret-add"));
      opts.constraintAdd.forEach(parseConstraintFlag);
      const changes =
        patch.count + command.length + opts.constraintAdd.length + opts.constraintRm.length + opts.secretAdd.length + opts.secretRm.length + envAdd.length + opts.envRm.length;
      if (changes === 0) throw new ShoalError("INVALID_ARGUMENT", "nothing to update: give a flag such as --replicas or --image, or a command after --");
      const watch = watchMode(ctx, opts);
      const daemon = ctx.daemon();
      // The image it will run: the new one, or the service's; its registry's login before the update.
      const login =
        opts.withRegistryAuth === true
          ? await dockerConfigLogin(ctx.io.env, imageRegistry(opts.image ?? (await resolveService(daemon, ref)).spec?.container?.image, `service ${ref}`))
          : undefined;
      try {
        if (login !== undefined) await storeRegistryLogin(ctx, daemon, login);
      } finally {
        login?.password.fill(0);
      }
      const secrets = opts.secretAdd.length === 0 ? [] : await daemon.listSecrets();
      const { service: updated, before } = await updateServiceSpec(daemon, ref, (spec) => {
        applyWorkloadPatch(spec, patch);
        const container = spec.container!;
        if (command.length > 0) {
          container.command = command.slice(0, 1);
          container.args = command.slice(1);
        }
        spec.constraints = spec.constraints.filter((c) => !opts.constraintRm.includes(c));
        for (const c of opts.constraintAdd) if (!spec.constraints.includes(c)) spec.constraints.push(c);
        container.secrets = container.secrets.filter((s) => !opts.secretRm.includes(s.secretName) && !opts.secretRm.includes(s.secretId));
        for (const added of secretReferences(secretAdd, secrets)) {
          container.secrets = container.secrets.filter((s) => (s.target || s.secretName) !== added.target);
          container.secrets.push(added);
        }
        const envName = (e: string): string => e.slice(0, Math.max(0, e.indexOf("=")));
        const dropped = new Set([...opts.envRm, ...envAdd.map(envName)]);
        container.env = [...container.env.filter((e) => !dropped.has(envName(e))), ...envAdd];
      });
      if (updated.spec !== undefined) warnHostNetwork(ctx, updated.spec);
      ctx.io.stdout(`${updated.id}\n`);
      if (watch !== undefined) await watchService(ctx, daemon, { service: updated, mode: watch, ignoreEarlierFailures: updated.specVersion === before.specVersion });
    });
}

function registerReads(service: Command, ctx: CommandContext): void {
  service
    .command("ls")
    .description("list services: REPLICAS is running/desired tasks")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const daemon = ctx.daemon();
      const [services, tasks] = await Promise.all([daemon.listServices(), daemon.listTasks({ serviceId: "", nodeId: "" })]);
      const views = services.map((s) => serviceView(s, tasks)).sort((a, b) => a.name.localeCompare(b.name));
      if (opts.format === "json") printJson(ctx.io, views);
      else ctx.io.stdout(renderTable(SERVICE_HEADERS, views.map(serviceRow)));
    });

  service
    .command("ps")
    .description("list a service's tasks, with the reason a task is pending or failed")
    .argument("<service>", "service name or ID")
    .option("--no-trunc", "do not truncate IDs and errors")
    .addOption(formatOption())
    .action(async (ref: string, opts: { format: OutputFormat; trunc: boolean }) => {
      const daemon = ctx.daemon();
      const found = await resolveService(daemon, ref);
      const [tasks, hostnameOf] = await Promise.all([daemon.listTasks({ serviceId: found.id, nodeId: "" }), hostnames(daemon)]);
      const views = tasks.map((t) => taskView(t, hostnameOf));
      if (opts.format === "json") printJson(ctx.io, views);
      else ctx.io.stdout(renderTable(TASK_HEADERS, taskRows(views, { nowMs: Date.now(), noTrunc: !opts.trunc })));
    });

  service
    .command("inspect")
    .description("show one service as JSON: its spec, previous spec, network mode and update status (never secret data)")
    .argument("<service>", "service name or ID")
    .action(async (ref: string) => {
      const daemon = ctx.daemon();
      const found = await resolveService(daemon, ref);
      const tasks = await daemon.listTasks({ serviceId: found.id, nodeId: "" });
      printJson(ctx.io, serviceInspectView(found, tasks));
    });
}

function registerChanges(service: Command, ctx: CommandContext): void {
  service
    .command("scale")
    .description("set the number of replicas: shoal service scale web=3 [api=2 ...]")
    .argument("<service=replicas...>", "service name or ID, =, number of replicas")
    .action(async (pairs: string[]) => {
      const daemon = ctx.daemon();
      for (const [ref, replicas] of pairs.map(parseScale)) {
        await updateServiceSpec(daemon, ref, (spec) => {
          if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL) throw new ShoalError("INVALID_ARGUMENT", `service ${ref} is global: it runs one task per eligible node and cannot be scaled`);
          spec.replicas = replicas;
        });
        ctx.io.stdout(`${ref} scaled to ${replicas}\n`);
      }
    });

  service
    .command("rollback")
    .description("return a service to its spec before the last update")
    .argument("<service>", "service name or ID")
    .action(async (ref: string) => {
      const daemon = ctx.daemon();
      const rolled = await retryOnVersionConflict(`service ${ref}`, async () => {
        const found = await resolveService(daemon, ref);
        return daemon.updateService({ serviceId: found.id, serviceVersion: found.meta?.version ?? 0n, spec: undefined, rollback: true });
      });
      ctx.io.stdout(`${rolled.id}\n`);
    });

  service
    .command("rm")
    .description("remove services: their tasks stop, and each service goes once its tasks have")
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

export function registerServiceCommands(program: Command, ctx: CommandContext): void {
  const service = program.command("service").description("manage services");
  registerCreate(service, ctx);
  registerReads(service, ctx);
  registerChanges(service, ctx);
  registerUpdate(service, ctx);
  registerLogs(service, ctx);
}
