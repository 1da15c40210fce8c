/** What a matching statement does. */
export type Effect = 'allow' | 'deny';

/** A statement that decided (or took part in) a decision. */
export interface MatchedStatement {
  readonly policy: string;
  readonly statement: number;
  readonly sid?: string;
  readonly effect: Effect;
}

export type DecisionReason = 'admin' | 'allowed' | 'explicit-deny' | 'no-matching-allow';

export interface Decision {
  readonly allowed: boolean;
  readonly reason: DecisionReason;
  /** The deny statements that matched when denied explicitly, else the allow statements that matched. */
  readonly matched: readonly MatchedStatement[];
}
