// The daemon's structured logger: pino JSON with `nodeId` and `component` on every line, and the
// fields that could ever hold a secret (tokens, unlock keys, private keys, CSRs) redacted by path.
// Code never interpolates such values into messages; redaction is the second line of defence.
import { pino, type DestinationStream, type Logger } from "pino";

export const REDACTED_PATHS = [
  "token",
  "*.token",
  "unlockKey",
  "*.unlockKey",
  "unlock_key",
  "*.unlock_key",
  "keyPem",
  "*.keyPem",
  "privateKey",
  "*.privateKey",
  "caKeyPem",
  "*.caKeyPem",
  "*.*.caKeyPem",
  "workerToken",
  "managerToken",
  "*.workerToken",
  "*.managerToken",
  "request.token",
  "request.unlockKey",
  "csr",
  "*.csr",
];

export function createDaemonLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env["SHOAL_LOG_LEVEL"] ?? "info",
      base: { pid: process.pid },
      redact: { paths: REDACTED_PATHS, censor: "[REDACTED]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination(1),
  );
}

export type { Logger };
