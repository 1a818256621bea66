// `shoal registry login|ls|logout`, as `docker login` but for the cluster: the credentials and the
// registry's CA go to the managers (sealed in their store), never to a worker's disk. The password
// comes from stdin (--password-stdin) or a prompt without echo, never from an argument.
import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { ShoalError } from "../../base/errors.js";
import { formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import { readRegistryPassword } from "../input.js";
import { registryView, renderTable } from "../views.js";

const MAX_CA_FILE_BYTES = 64 * 1024;

async function readCaFile(path: string): Promise<string> {
  try {
    const pem = await readFile(path, "utf8");
    if (Buffer.byteLength(pem) > MAX_CA_FILE_BYTES) throw new ShoalError("INVALID_ARGUMENT", `the CA file ${path} is larger than ${MAX_CA_FILE_BYTES} bytes`);
    return pem;
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    throw new ShoalError("INVALID_ARGUMENT", `cannot read the CA file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function registerRegistryCommands(program: Command, ctx: CommandContext): void {
  const registry = program.command("registry").description("registry logins the managers use to pull images (never given to workers' disks)");

  registry
    .command("login")
    .description("store a login (and/or the registry's CA) on the managers; the registry checks it first")
    .argument("<registry>", "registry address, HOST[:PORT]")
    .option("-u, --username <user>", "user name")
    .option("--password-stdin", "read the password from the first line of stdin", false)
    .option("--ca-file <file>", "PEM certificate of the CA that signs the registry's TLS certificate")
    .action(async (addr: string, opts: { username?: string; passwordStdin: boolean; caFile?: string }) => {
      const caPem = opts.caFile !== undefined ? await readCaFile(opts.caFile) : "";
      if (opts.passwordStdin && opts.username === undefined) throw new ShoalError("INVALID_ARGUMENT", "--password-stdin needs --username");
      const password = opts.username !== undefined ? Buffer.from(await readRegistryPassword(ctx.io.stdin, ctx.io.stderr, opts.passwordStdin), "utf8") : Buffer.alloc(0);
      try {
        const stored = await ctx.daemon().registryLogin({ registry: addr, username: opts.username ?? "", password, caPem });
        ctx.io.stdout(stored.username !== "" ? `Login to ${stored.registry} as ${stored.username} stored on the managers.\n` : `CA of ${stored.registry} stored on the managers.\n`);
      } finally {
        password.fill(0);
      }
    });

  registry
    .command("ls")
    .description("list the registries the managers hold a login for (never the passwords)")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const views = (await ctx.daemon().listRegistries()).map(registryView);
      if (opts.format === "json") {
        printJson(ctx.io, views);
        return;
      }
      ctx.io.stdout(renderTable(["REGISTRY", "USERNAME", "OWN CA", "UPDATED"], views.map((v) => [v.registry, v.username, v.ownCa ? "yes" : "no", v.updatedAt])));
    });

  registry
    .command("logout")
    .description("remove the managers' login for a registry")
    .argument("<registry>", "registry address, HOST[:PORT]")
    .action(async (addr: string) => {
      await ctx.daemon().registryLogout(addr);
      ctx.io.stdout(`${addr}\n`);
    });
}
