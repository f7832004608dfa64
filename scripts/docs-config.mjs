// Rewrites the configuration table in README.md from the schema (run after `npm run build`).
import fs from 'node:fs';
import { withConfigTable } from '../dist/src/config/reference.js';

const readme = fs.readFileSync('README.md', 'utf8');
fs.writeFileSync('README.md', withConfigTable(readme));
console.log('README.md configuration table updated');
