import { expect } from 'vitest';
import type { ApiResponse } from '../helpers/app.js';

/** The exact field set of an RFC 9457 problem as Keyhold sends it. */
export const PROBLEM_FIELDS = ['code', 'detail', 'requestId', 'status', 'title', 'type'];

/**
 * Asserts that a response is the problem the API promises: the HTTP status, the stable `code`, the same status
 * inside the body, and the application/problem+json media type (RFC 9457 §3).
 */
export function expectProblem(response: ApiResponse, status: number, code: string): void {
  expect({ status: response.status, code: response.body?.code }).toEqual({ status, code });
  expect(response.body.status).toBe(status);
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json(;|$)/);
}
