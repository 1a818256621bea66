// Randomness is injected. Security-relevant bytes (keys, tokens, IDs) always come from the OS CSPRNG;
// the injectable `Random` covers scheduling choices (election timeouts, renewal times) that a
// simulator must be able to replay.
import { randomBytes, randomInt } from "node:crypto";

export interface Random {
  /** A uniformly distributed float in [0, 1). */
  float(): number;
  /** A uniformly distributed integer in [minInclusive, maxExclusive). */
  int(minInclusive: number, maxExclusive: number): number;
}

export const systemRandom: Random = {
  float: () => randomBytes(6).readUIntBE(0, 6) / 2 ** 48,
  int: (min, max) => randomInt(min, max),
};

/** Deterministic PRNG (sfc32 seeded through splitmix32) for simulation and tests. */
export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  float(): number {
    return this.u32() / 2 ** 32;
  }

  int(minInclusive: number, maxExclusive: number): number {
    if (!(maxExclusive > minInclusive)) throw new RangeError(`empty range [${minInclusive}, ${maxExclusive})`);
    return minInclusive + Math.floor(this.float() * (maxExclusive - minInclusive));
  }
}
