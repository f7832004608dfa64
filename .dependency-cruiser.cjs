/**
 * The layers of src/ (docs/architecture.md), bottom up; a module imports only from its own layer
 * or the layers below it, type imports included, and nothing imports in a circle:
 *   0 protocol, errors.ts          commands, envelope, routes, identity, shared types
 *   1 transport                     the bus above the broker adapters
 *   2 cluster, events               membership, requests, dispatcher; split-role client events
 *   3 gateway, worker               connections and delivery; handler invocation
 *   4 api                           the push and query API
 *   5 node.ts, publisher.ts, index.ts, logger.ts, admin, cli, config, di
 * src/client/ (gatewire/client, for browsers) stands apart: it imports only from itself, nothing
 * in src/ imports it.
 */
const layers = [
  ['^src/(protocol/|errors\\.ts)'],
  ['^src/transport/'],
  ['^src/(cluster|events)/'],
  ['^src/(gateway|worker)/'],
  ['^src/api/'],
  ['^src/(node|publisher|index|logger)\\.ts', '^src/(admin|cli|config|di)/'],
];

const upward = [];
layers.forEach((from, level) => {
  const above = layers.slice(level + 1).flat();
  if (above.length === 0) return;
  upward.push({
    name: `layer-${level}-imports-above`,
    comment: 'a module imports only from its own layer or the layers below it (docs/architecture.md)',
    severity: 'error',
    from: { path: from.join('|') },
    to: { path: above.join('|') },
  });
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles, type imports included',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...upward,
    {
      name: 'client-self-contained',
      comment:
        'gatewire/client runs in browsers as compiled: src/client/ imports only from src/client/, and no npm package',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { pathNot: '^src/client/' },
    },
    {
      name: 'client-not-imported',
      comment: 'the server side does not depend on the client library (src/client/ stands apart)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/client/' },
      to: { path: '^src/client/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // src/, and what it imports from npm and Node as leaves (the client's rule sees them)
    tsPreCompilationDeps: true,
    parser: 'swc',
  },
};
