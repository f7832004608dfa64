#!/usr/bin/env node
// The gatewire command line; the TypeScript sources are compiled to dist/ by `npm run build`.
import { run } from '../dist/src/cli/main.js';
run();
