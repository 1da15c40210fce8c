import { expect } from 'vitest';
import type { ApiResponse } from '../helpers/app.js';

/** The exact field set of an RFC 9457 problem as Keyhold sends it. */
export const PROBLEM_FIELDS = ['code', 'detail', 'requestId', 'status', 'title', 'type'];

/**
 * Asserts that a response is the problem the API promises: the HTTP status, the stable `code`, the same status
 * inside the body, and the application/problem+json media type (RFC 9457 §3). `what` names the request in a failure,
 * when one test makes several.
 */
export function expectProblem(response: ApiResponse, status: number, code: string, what?: string): void {
  expect({ status: response.status, code: response.body?.code }, what).toEqual({ status, code });
  expect(response.body.status, what).toBe(status);
  expect(String(response.headers['content-type']), what).toMatch(/^application\/problem\+json(;|$)/);
}
