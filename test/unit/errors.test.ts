import { describe, expect, it } from 'vitest';
import {
  DecryptionFailedError,
  ERROR_CODE_LIST,
  ERROR_CODES,
  KeyholdError,
  StartupError,
  UnavailableError,
  ValidationError,
  type ErrorCode,
} from '../../src/errors.js';

const entries = Object.entries(ERROR_CODES) as Array<[ErrorCode, { status: number; title: string }]>;

describe('ERROR_CODES', () => {
  it.each(entries)('%s has a 4xx or 5xx status', (_code, { status }) => {
    expect(Number.isInteger(status)).toBe(true);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThanOrEqual(599);
  });

  it.each(entries)('%s has a non-empty title', (_code, { title }) => {
    expect(typeof title).toBe('string');
    expect(title.trim()).not.toBe('');
  });

  it.each(entries)('%s is named KH_ERR_<UPPER_SNAKE_CASE>', (code) => {
    expect(code).toMatch(/^KH_ERR_[A-Z]+(_[A-Z]+)*$/);
  });

  it('lists every code exactly once in ERROR_CODE_LIST', () => {
    expect([...ERROR_CODE_LIST].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    expect(new Set(ERROR_CODE_LIST).size).toBe(ERROR_CODE_LIST.length);
  });

  it('gives every code its own title', () => {
    const titles = entries.map(([, { title }]) => title);
    expect(new Set(titles).size).toBe(titles.length);
  });
});

describe('KeyholdError', () => {
  it.each(ERROR_CODE_LIST)('takes the status of %s from the table', (code) => {
    expect(new KeyholdError(code).status).toBe(ERROR_CODES[code].status);
  });

  it('uses the title as the message when no detail is given', () => {
    expect(new KeyholdError('KH_ERR_KEY_NOT_FOUND').message).toBe('No such key');
  });

  it('uses the detail as the message when one is given', () => {
    expect(new KeyholdError('KH_ERR_KEY_NOT_FOUND', 'No key named "x"').message).toBe('No key named "x"');
  });

  it('keeps its code and is an Error', () => {
    const error = new KeyholdError('KH_ERR_FORBIDDEN');
    expect(error.code).toBe('KH_ERR_FORBIDDEN');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('KeyholdError');
  });

  it('keeps the cause it is given', () => {
    const cause = new Error('socket closed');
    expect(new KeyholdError('KH_ERR_INTERNAL', undefined, { cause }).cause).toBe(cause);
  });
});

describe('DecryptionFailedError', () => {
  it('has the one fixed message "The ciphertext could not be decrypted"', () => {
    expect(new DecryptionFailedError().message).toBe('The ciphertext could not be decrypted');
  });

  it('has the same message, code and status on every instance', () => {
    const [a, b] = [new DecryptionFailedError(), new DecryptionFailedError()];
    expect([a.message, a.code, a.status]).toEqual([b.message, b.code, b.status]);
  });

  it('is KH_ERR_DECRYPTION_FAILED with status 400', () => {
    expect(new DecryptionFailedError()).toMatchObject({ code: 'KH_ERR_DECRYPTION_FAILED', status: 400 });
  });

  it('takes no detail, so no caller can make its message vary', () => {
    expect(DecryptionFailedError.length).toBe(0);
  });

  it('is a KeyholdError named DecryptionFailedError', () => {
    const error = new DecryptionFailedError();
    expect(error).toBeInstanceOf(KeyholdError);
    expect(error.name).toBe('DecryptionFailedError');
  });
});

describe('ValidationError', () => {
  it('is KH_ERR_VALIDATION with status 400 and the detail as message', () => {
    expect(new ValidationError('name is too long')).toMatchObject({
      name: 'ValidationError',
      code: 'KH_ERR_VALIDATION',
      status: 400,
      message: 'name is too long',
    });
  });
});

describe('UnavailableError', () => {
  it('is KH_ERR_UNAVAILABLE with status 503 and a retry hint by default', () => {
    expect(new UnavailableError()).toMatchObject({
      name: 'UnavailableError',
      code: 'KH_ERR_UNAVAILABLE',
      status: 503,
      message: 'The database is unavailable; retry later',
    });
  });
});

describe('StartupError', () => {
  it('is a plain Error, not an HTTP error', () => {
    const error = new StartupError('Invalid configuration');
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(KeyholdError);
    expect(error.name).toBe('StartupError');
  });
});
