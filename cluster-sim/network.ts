// The simulated network between node indices: per-message delay (and so reordering), loss,
// duplication, and partitions that cut links in one direction or both.
import type { Random } from "../src/base/random.js";

export interface NetworkConditions {
  minDelayMs: number;
  maxDelayMs: number;
  /** Probability that a message is dropped. */
  lossRate: number;
  /** Probability that a delivered message is delivered a second time. */
  duplicateRate: number;
  /** Probability that a message is held back ten times longer than usual (strong reordering). */
  slowRate: number;
}

export const CALM_NETWORK: NetworkConditions = { minDelayMs: 1, maxDelayMs: 15, lossRate: 0, duplicateRate: 0, slowRate: 0 };

export class SimNetwork {
  private conditions: NetworkConditions = CALM_NETWORK;
  /** Cut directed links, as "from>to". */
  private readonly cut = new Set<string>();

  constructor(
    private readonly random: Random,
    readonly nodeCount: number,
  ) {}

  setConditions(conditions: NetworkConditions): void {
    if (conditions.minDelayMs < 0 || conditions.maxDelayMs < conditions.minDelayMs) {
      throw new RangeError(`bad delay range [${conditions.minDelayMs}, ${conditions.maxDelayMs}]`);
    }
    this.conditions = conditions;
  }

  getConditions(): NetworkConditions {
    return this.conditions;
  }

  /** Symmetric partition: nodes in different groups cannot reach each other in either direction. */
  partition(groups: number[][]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.cut.add(`${x}>${y}`);
      }
    }
  }

  /** Asymmetric fault: messages from `from` to `to` are lost, the other direction still works. */
  cutOneWay(from: number, to: number): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  get cutLinks(): number {
    return this.cut.size;
  }

  connected(from: number, to: number): boolean {
    return !this.cut.has(`${from}>${to}`);
  }

  /**
   * Decides the fate of one message sent now: the delays of its deliveries (empty when lost or
   * cut, two entries when duplicated). Consumes randomness identically whatever the outcome.
   */
  plan(from: number, to: number): number[] {
    const c = this.conditions;
    const lost = this.random.float() < c.lossRate;
    const duplicated = this.random.float() < c.duplicateRate;
    const delays = [this.delay(c), this.delay(c)];
    if (lost || !this.connected(from, to)) return [];
    return duplicated ? delays : [delays[0]!];
  }

  private delay(c: NetworkConditions): number {
    const base = c.minDelayMs + this.random.int(0, c.maxDelayMs - c.minDelayMs + 1);
    return this.random.float() < c.slowRate ? base * 10 : base;
  }
}
