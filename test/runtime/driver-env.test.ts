/** The nodes' diagnostic environment variables are validated, not silently ignored. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lazyHoldFromEnv } from '../../src/runtime/driver.ts';
import { ConfigError } from '../../src/core/errors.ts';

test('BULWARK_LAZY_HOLD_MS: default 20, a number from 0 to 1000 taken, anything else a ConfigError naming it', () => {
  const saved = process.env['BULWARK_LAZY_HOLD_MS'];
  try {
    delete process.env['BULWARK_LAZY_HOLD_MS'];
    assert.equal(lazyHoldFromEnv(), 20);
    process.env['BULWARK_LAZY_HOLD_MS'] = '0';
    assert.equal(lazyHoldFromEnv(), 0);
    for (const bad of ['abc', '-1', '5000', 'Infinity']) {
      process.env['BULWARK_LAZY_HOLD_MS'] = bad;
      assert.throws(() => lazyHoldFromEnv(), (e: unknown) => e instanceof ConfigError && e.message.includes('BULWARK_LAZY_HOLD_MS'), bad);
    }
  } finally {
    if (saved === undefined) delete process.env['BULWARK_LAZY_HOLD_MS'];
    else process.env['BULWARK_LAZY_HOLD_MS'] = saved;
  }
});
