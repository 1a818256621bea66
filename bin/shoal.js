#!/usr/bin/env node
// The `shoal` command: loads tsx's ESM hooks, then runs the TypeScript entry point. The import is
// resolved against this file's URL, so it works from any working directory and through `npx shoal`.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
