// The replicated key-value state machine the simulated clients drive: command encoding, apply,
// and snapshot images (sorted JSON so equal states give equal bytes).
import type { KvInput, KvOutput, KvValue } from "./linearizability.js";

export interface KvCommand {
  /** Client and per-client sequence number: identify the operation when it is applied. */
  clientId: number;
  seq: number;
  input: KvInput;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(command: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

export function decodeCommand(data: Uint8Array): KvCommand | undefined {
  if (data.length === 0) return undefined; // a leader's no-op
  return JSON.parse(decoder.decode(data)) as KvCommand;
}

export class KvStateMachine {
  private readonly values = new Map<string, string>();

  apply(input: KvInput): KvOutput {
    const current: KvValue = this.values.get(input.key) ?? null;
    switch (input.kind) {
      case "put":
        this.values.set(input.key, input.value);
        return { kind: "put" };
      case "get":
        return { kind: "get", value: current };
      case "cas": {
        const ok = current === input.expected;
        if (ok) this.values.set(input.key, input.value);
        return { kind: "cas", ok };
      }
    }
  }

  read(key: string): KvValue {
    return this.values.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.values.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  }

  restore(image: Uint8Array): void {
    this.values.clear();
    if (image.length === 0) return;
    for (const [k, v] of JSON.parse(decoder.decode(image)) as Array<[string, string]>) this.values.set(k, v);
  }
}
