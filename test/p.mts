import { parseCommandLine } from '../src/policy/shell.js';
for (const line of process.argv.slice(2)) console.log(line, '=>', JSON.stringify(await parseCommandLine(line)));
