import { conformanceSuite } from './suite.js';

conformanceSuite('local', () => ({ bus: { kind: 'local' } }));
