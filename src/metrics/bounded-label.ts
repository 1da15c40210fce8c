/** The label value every value past a {@link BoundedLabel}'s bound is counted under. */
export const OTHER = 'other';

/**
 * Keeps a label's value set bounded: the first `max` distinct values seen keep their own value, every later one is
 * reported as {@link OTHER}. A label bounded so keeps a metric's series count bounded whatever its callers send. The
 * set lives as long as the process (a series once exported stays), so "first" means first since start-up.
 */
export class BoundedLabel {
  readonly #kept = new Set<string>();

  constructor(readonly max: number) {}

  of(value: string): string {
    if (this.#kept.has(value)) return value;
    if (this.#kept.size >= this.max) return OTHER;
    this.#kept.add(value);
    return value;
  }
}
