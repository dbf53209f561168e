// Lint: typescript-eslint strict, type-aware, plus the determinism rules that keep protocol
// code pure (no clock, no randomness, no timers, no I/O). See docs/protocol.md "Purity".
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const impureGlobals = [
  { name: 'setTimeout', message: 'Protocol code gets time from tick events, not timers.' },
  { name: 'setInterval', message: 'Protocol code gets time from tick events, not timers.' },
  { name: 'setImmediate', message: 'Protocol code gets time from tick events, not timers.' },
  { name: 'queueMicrotask', message: 'Protocol code is synchronous.' },
  { name: 'performance', message: 'Protocol code gets time from tick events.' },
  { name: 'process', message: 'Protocol code does not touch the process.' },
  { name: 'fetch', message: 'Protocol code does no I/O.' },
];
const impureSyntax = [
  { selector: "MemberExpression[object.name='Date'][property.name='now']", message: 'Date.now is banned in protocol code: time arrives in events.' },
  { selector: "NewExpression[callee.name='Date']", message: 'new Date() is banned in protocol code: time arrives in events.' },
  { selector: "MemberExpression[object.name='Math'][property.name='random']", message: 'Math.random is banned in protocol code: use the seeded generator handed in.' },
  { selector: "MemberExpression[property.name='randomBytes']", message: 'randomBytes is banned in protocol code: use the seeded generator handed in.' },
  { selector: "MemberExpression[property.name='randomUUID']", message: 'randomUUID is banned in protocol code.' },
  { selector: "MemberExpression[object.name='performance'][property.name='now']", message: 'performance.now is banned in protocol code.' },
  { selector: 'AwaitExpression', message: 'Protocol code is synchronous: events in, effects out.' },
];
const impureImports = {
  paths: ['fs', 'fs/promises', 'net', 'dgram', 'child_process', 'worker_threads', 'http', 'https', 'os', 'crypto', 'timers', 'timers/promises', 'perf_hooks'].map((name) => ({
    name,
    message: 'Protocol code does no I/O and reads no clock; crypto comes through the CryptoProvider.',
  })),
  patterns: [
    { group: ['node:*'], message: 'Protocol code does no I/O and reads no clock; crypto comes through the CryptoProvider.' },
    { group: ['**/runtime/**', '**/sim/**', '**/cli/**'], message: 'Protocol code must not depend on a runtime.' },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'coverage/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreVoidReturningFunctions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unnecessary-condition': ['error', { allowConstantLoopConditions: true }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Protocol code: pure state machines and the pure modules they use.
    files: ['src/core/**/*.ts', 'src/codec/**/*.ts', 'src/stages/**/*.ts', 'src/app/**/*.ts', 'src/services/kv/store.ts', 'src/services/kv/ops.ts', 'src/services/kv/glob.ts', 'src/services/kv/resp/parser.ts', 'src/services/kv/resp/commands.ts', 'src/state/**/*.ts', 'src/durability/logic/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-globals': ['error', ...impureGlobals],
      'no-restricted-syntax': ['error', ...impureSyntax],
      'no-restricted-imports': ['error', impureImports],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
