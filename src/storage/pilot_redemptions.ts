/**
 * One redemption of a pilot enrolment credential: inside the transaction, if fewer than `limit` slots of
 * `credential` are used, take the next one and append `json` (the issued token's record); otherwise
 * append `denyJson` (its refusal) and take nothing. Count and record commit together or not at all.
 */
export interface RedeemOp { kind: 'redeem'; credential: string; limit: number; json: string; denyJson: string; result?: RedemptionOutcome }

/** What a redemption got: the slot it took (1-based), or a refusal with the slots already used. */
export type RedemptionOutcome = { redeemed: true; slot: number } | { redeemed: false; used: number }
