import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../../src/errors.js';
import { SessionPool } from '../../../src/root-keys/session-pool.js';

function factory() {
  let next = 0;
  const opened: number[] = [];
  const closed: number[] = [];
  return {
    opened,
    closed,
    open: () => {
      opened.push(++next);
      return next;
    },
    close: (session: number) => void closed.push(session),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('SessionPool', () => {
  it('opens sessions on demand up to its size, and queues the rest in order', async () => {
    const sessions = factory();
    const pool = new SessionPool(sessions, 2);
    const busy = new Set<number>();
    const order: number[] = [];
    const runs = Array.from({ length: 6 }, (_, i) =>
      pool.run(async (session) => {
        expect(busy.has(session)).toBe(false);
        busy.add(session);
        await tick();
        busy.delete(session);
        order.push(i);
        return session;
      }),
    );
    expect(new Set(await Promise.all(runs))).toEqual(new Set([1, 2]));
    expect(sessions.opened).toEqual([1, 2]);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('closes a session whose operation failed and gives the next caller a fresh one', async () => {
    const sessions = factory();
    const pool = new SessionPool(sessions, 1);
    const failing = pool.run(async () => {
      throw new Error('CKR_ARGUMENTS_BAD');
    });
    const next = pool.run(async (session) => session);
    await expect(failing).rejects.toThrow('CKR_ARGUMENTS_BAD');
    expect(await next).toBe(2);
    expect(sessions.closed).toEqual([1]);
    expect(pool.openSessions).toBe(1);
  });

  it('passes on a failure to open a session', async () => {
    const pool = new SessionPool({ open: () => { throw new Error('CKR_TOKEN_NOT_PRESENT'); }, close: () => undefined }, 1);
    await expect(pool.run(async () => 1)).rejects.toThrow('CKR_TOKEN_NOT_PRESENT');
    expect(pool.openSessions).toBe(0);
  });

  it('on close, lets the operations under way finish, refuses queued and new ones with 503, and closes every session', async () => {
    const sessions = factory();
    const pool = new SessionPool(sessions, 1);
    const running = pool.run(async () => {
      await tick();
      return 'done';
    });
    const queued = pool.run(async () => 'never');
    await pool.close();
    expect(await running).toBe('done');
    await expect(queued).rejects.toBeInstanceOf(UnavailableError);
    await expect(pool.run(async () => 'late')).rejects.toBeInstanceOf(UnavailableError);
    expect(sessions.closed).toEqual([1]);
  });
});
