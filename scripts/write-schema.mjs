// Publishes the config's JSON Schema (for editor completion) from the same zod schema that validates it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { configFileSchema } from '../dist/config/schema.js';

const schema = z.toJSONSchema(configFileSchema, { io: 'input', unrepresentable: 'any' });
schema.title = 'mcp-ssh-gateway connections.json';
mkdirSync(new URL('../schema/', import.meta.url), { recursive: true });
writeFileSync(new URL('../schema/connections.schema.json', import.meta.url), JSON.stringify(schema, null, 2) + '\n');
