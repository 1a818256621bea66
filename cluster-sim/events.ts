// The simulator's virtual clock and event queue: events run in (time, sequence) order, so two
// events at the same virtual millisecond always run in the order they were scheduled.

export interface SimEvent {
  timeMs: number;
  seq: number;
  /** A short, deterministic description; hashed into the run's trace. */
  label: string;
  run: () => void;
}

/** A binary min-heap of events keyed by (timeMs, seq). */
export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private nextSeq = 0;
  private currentMs = 0;

  get nowMs(): number {
    return this.currentMs;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Schedules `run` after `delayMs` of virtual time (never in the past). */
  schedule(delayMs: number, label: string, run: () => void): void {
    if (!(delayMs >= 0) || !Number.isFinite(delayMs)) throw new RangeError(`bad event delay ${delayMs}`);
    this.push({ timeMs: this.currentMs + delayMs, seq: this.nextSeq++, label, run });
  }

  /** Removes and returns the earliest event, advancing the virtual clock to its time. */
  pop(): SimEvent | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      this.siftDown(0);
    }
    this.currentMs = top.timeMs;
    return top;
  }

  peekTimeMs(): number | undefined {
    return this.heap[0]?.timeMs;
  }

  private static before(a: SimEvent, b: SimEvent): boolean {
    return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!EventQueue.before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && EventQueue.before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && EventQueue.before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === i) return;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
  }
}

/** Derives an independent 32-bit seed for a sub-stream (a node, an incarnation) from the master seed. */
export function deriveSeed(masterSeed: number, ...parts: number[]): number {
  let h = (masterSeed ^ 0x5bd1e995) >>> 0;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x9e3779b1) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
  }
  return h >>> 0;
}
