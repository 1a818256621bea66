// `shoal secret ...`: create, list, inspect and remove secrets. Secret bytes come from a file or
// stdin and go only into the CreateSecret request: never to stdout, stderr or an error message.
import { Command } from "commander";
import { formatOption, printJson, type CommandContext, type OutputFormat } from "../context.js";
import { readSecretData } from "../input.js";
import { resolveSecret } from "../resolve.js";
import { renderTable, secretView } from "../views.js";

export function registerSecretCommands(program: Command, ctx: CommandContext): void {
  const secret = program.command("secret").description("manage secrets");

  secret
    .command("create")
    .description("create a secret from FILE, or from stdin with -")
    .option("--zone <zone>", "security zone: only services of this zone may use it")
    .argument("<name>", "secret name")
    .argument("<file>", "file holding the secret, or - for stdin (at most 500 KiB)")
    .action(async (name: string, file: string, opts: { zone?: string }) => {
      const data = await readSecretData(file, ctx.io.stdin, name);
      try {
        const created = await ctx.daemon().createSecret({ spec: { name, labels: {}, data, zone: opts.zone ?? "" } });
        ctx.io.stdout(`${created.id}\n`);
      } finally {
        data.fill(0);
      }
    });

  secret
    .command("ls")
    .description("list secrets (never their data)")
    .addOption(formatOption())
    .action(async (opts: { format: OutputFormat }) => {
      const views = (await ctx.daemon().listSecrets()).map(secretView).sort((a, b) => a.name.localeCompare(b.name));
      if (opts.format === "json") {
        printJson(ctx.io, views);
        return;
      }
      ctx.io.stdout(
        renderTable(
          ["ID", "NAME", "ZONE", "SIZE", "CREATED"],
          views.map((v) => [v.id, v.name, v.zone, String(v.sizeBytes), v.createdAt]),
        ),
      );
    });

  secret
    .command("inspect")
    .description("show one secret's metadata as JSON (never its data)")
    .argument("<secret>", "secret name or ID")
    .action(async (ref: string) => {
      printJson(ctx.io, secretView(await resolveSecret(ctx.daemon(), ref)));
    });

  secret
    .command("rm")
    .description("remove secrets")
    .argument("<secret...>", "secret names or IDs")
    .action(async (refs: string[]) => {
      const daemon = ctx.daemon();
      for (const ref of refs) {
        const found = await resolveSecret(daemon, ref);
        await daemon.removeSecret(found.id);
        ctx.io.stdout(`${found.spec?.name ?? found.id}\n`);
      }
    });
}
