/** The e2e tests' shared pieces now live in test/helpers/fixtures.ts; kept for the files that import them from here. */
export * from '../helpers/fixtures.js';
