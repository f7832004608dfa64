/**
 * docs/asyncapi.yaml, the machine-readable form of docs/wire-format.md and
 * docs/client-protocol.md: it parses with the AsyncAPI parser with no error, and it stays true to
 * the code. Every op of `Op` is a message with its name and number; each command's schema is
 * checked against commandProblem() (a command built from the schema's required fields is
 * accepted, without any one of them refused, and each typed field of the wrong type refused) and
 * against the fields of the docs' command table; the `t` of the client controls are those
 * parseClientControl() reads and those the gateway sends. Also: the publish script printed in
 * docs/wire-format.md is PUBLISH_SCRIPT. No broker needed.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import { Op } from '../../src/protocol/commands.js';
import { commandProblem } from '../../src/protocol/command-check.js';
import { CONTROL_MARK, parseClientControl, replyControl } from '../../src/protocol/client-protocol.js';
import { PUBLISH_SCRIPT } from '../../src/transport/redis/scripts.js';

type Schema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  oneOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
};

const DOC = readFileSync(path.resolve('docs/asyncapi.yaml'), 'utf8');
const WIRE_FORMAT = readFileSync(path.resolve('docs/wire-format.md'), 'utf8');

interface Parsed {
  messages: { name: string; channelKey: string; payload: Schema }[];
  operations: { action: string; messages: { name: string; payload: Schema }[] }[];
}
let parsed: Parsed;
let diagnostics: { severity: number; message: string; path: (string | number)[] }[] = [];

before(async () => {
  const result = await new Parser().parse(DOC);
  diagnostics = result.diagnostics;
  const document = result.document;
  assert.ok(document, `the document did not parse: ${JSON.stringify(diagnostics.slice(0, 5))}`);
  const messages: Parsed['messages'] = [];
  for (const channel of document.channels().all()) {
    for (const message of channel.messages().all()) {
      messages.push({
        name: message.name() ?? '',
        channelKey: channel.id(),
        payload: message.payload()?.json() as Schema,
      });
    }
  }
  const operations = document
    .operations()
    .all()
    .map((op) => ({
      action: op.action(),
      messages: op
        .messages()
        .all()
        .map((m) => ({ name: m.name() ?? '', payload: m.payload()?.json() as Schema })),
    }));
  parsed = { messages, operations };
});

test('docs/asyncapi.yaml parses with no error-severity diagnostic', () => {
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  assert.deepEqual(
    errors.map((d) => `${d.path.join('/')}: ${d.message}`),
    [],
  );
});

// ---- the bus: op codes and fields -----------------------------------------------------------

/** The command messages, one per op name (a message may be listed by several channels). */
function commandSchemas(): Map<string, Schema> {
  const byName = new Map<string, Schema>();
  for (const m of parsed.messages) {
    if (m.payload?.properties?.['op'] === undefined) continue;
    byName.set(m.name, m.payload);
  }
  return byName;
}

function typesOf(schema: Schema): string[] {
  if (schema.oneOf && !schema.properties) return schema.oneOf.flatMap(typesOf);
  if (schema.const !== undefined) return [typeof schema.const === 'number' ? 'integer' : typeof schema.const];
  if (schema.enum) return [...new Set(schema.enum.map((v) => (typeof v === 'number' ? 'integer' : typeof v)))];
  return schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
}

/** A value of the schema's first form, with every required field (and the format's bin as bytes). */
function sample(schema: Schema): unknown {
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.oneOf && !schema.properties) return sample(schema.oneOf[0]!);
  switch (typesOf(schema)[0]) {
    case 'string':
      return 'aaaaaaaaaaaa1';
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    case 'array':
      return [sample(schema.items ?? { type: 'string' })];
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const field of schema.required ?? []) out[field] = sample(schema.properties![field]!);
      return out;
    }
    default:
      return 'any';
  }
}

/** A value that none of the schema's types admits. */
function wrongValue(schema: Schema): unknown {
  return typesOf(schema).includes('boolean') ? 3.5 : true;
}

/** Fields the receivers do not check, with the reason (the schema still lists them). */
const UNCHECKED: Record<string, string[]> = {
  UNBIND_UID: ['u'], // sent by gatewire; the client's uid is unbound whatever `u` is
};

describe('the bus commands', () => {
  test('every op of Op is a message with its name and number, and nothing else claims an op', () => {
    const schemas = commandSchemas();
    for (const [name, op] of Object.entries(Op)) {
      const schema = schemas.get(name);
      assert.ok(schema, `no message ${name}`);
      assert.equal(schema.properties!['op']!.const, op, `${name}: op`);
      assert.ok(schema.required?.includes('op'), `${name}: op is required`);
    }
    assert.deepEqual([...schemas.keys()].sort(), Object.keys(Op).sort());
  });

  test('each command schema agrees with commandProblem()', () => {
    for (const [name, schema] of commandSchemas()) {
      if (name === 'CLIENT_EVENT') continue; // checked by the event codec, not on the exchange (below)
      const command = sample(schema) as Record<string, unknown>;
      assert.equal(commandProblem(command), null, `${name}: ${JSON.stringify(command)}`);
      for (const field of schema.required ?? []) {
        if (field === 'op' || UNCHECKED[name]?.includes(field)) continue;
        const without = { ...command };
        delete without[field];
        assert.notEqual(commandProblem(without), null, `${name} without ${field} is accepted`);
      }
      for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
        if (field === 'op' || UNCHECKED[name]?.includes(field) || typesOf(fieldSchema).length === 0) continue;
        const wrong = { ...command, [field]: wrongValue(fieldSchema) };
        assert.notEqual(commandProblem(wrong), null, `${name} with ${field}: ${JSON.stringify(wrong[field])}`);
      }
    }
  });

  test('bytes are accepted where the schema says bin: a payload may be str or bin', () => {
    const schema = commandSchemas().get('SEND_TO_UIDS')!;
    assert.deepEqual(typesOf(schema.properties!['d']!), ['string', 'string']);
    assert.equal(commandProblem({ op: Op.SEND_TO_UIDS, u: ['a'], d: new Uint8Array([1]) }), null);
    assert.notEqual(commandProblem({ op: Op.SEND_TO_UIDS, u: [42], d: 'x' }), null, 'a uid must be a string');
  });

  test("each command's fields are those of the docs' command table (`?`: optional)", () => {
    const table = commandTable();
    const asks = ['r', 'f', 'dl']; // the request fields of per-client commands (docs: a bullet below the table)
    for (const [name, schema] of commandSchemas()) {
      const documented = table.get(name);
      assert.ok(documented, `${name} is not in the table of docs/wire-format.md`);
      assert.equal(documented.op, (Op as Record<string, number>)[name], `${name}: op in the docs`);
      const required = (schema.required ?? []).filter((f) => f !== 'op').sort();
      const optional = Object.keys(schema.properties ?? {})
        .filter((f) => f !== 'op' && !required.includes(f) && !(asks.includes(f) && !documented.optional.includes(f)))
        .sort();
      assert.deepEqual(required, [...documented.required].sort(), `${name}: required fields`);
      assert.deepEqual(optional, [...documented.optional].sort(), `${name}: optional fields`);
    }
  });

  test('the QUERY kinds are those of the docs', () => {
    const kinds = commandSchemas().get('QUERY')!.properties!['q']!.enum as string[];
    for (const kind of kinds) assert.ok(WIRE_FORMAT.includes(`\`${kind}\``), `query kind ${kind} not in the docs`);
    assert.deepEqual([...kinds].sort(), [
      'client',
      'clients',
      'count',
      'groups',
      'release',
      'sessions',
      'takeover',
      'uidList',
      'uids',
    ]);
  });
});

/** The rows of the command table of docs/wire-format.md: op, name, required and optional fields. */
function commandTable(): Map<string, { op: number; required: string[]; optional: string[] }> {
  const rows = new Map<string, { op: number; required: string[]; optional: string[] }>();
  for (const line of WIRE_FORMAT.split('\n')) {
    const row = /^\| (\d+) \| ([A-Z_]+) \| (.*) \| .* \|$/.exec(line);
    if (!row) continue;
    const fields = row[3]!.replace(/\{[^}]*\}/g, '{}'); // nested maps (ANNOUNCE n, CLIENT_EVENT rq)
    const required: string[] = [];
    const optional: string[] = [];
    for (const m of fields.matchAll(/`(\w+)`(\?)?(?=[:/])/g)) (m[2] ? optional : required).push(m[1]!);
    rows.set(row[2]!, { op: Number(row[1]), required, optional });
  }
  return rows;
}

// ---- the client protocol ------------------------------------------------------------------

function controlTypes(action: 'send' | 'receive'): Map<string, Schema> {
  const out = new Map<string, Schema>();
  for (const op of parsed.operations) {
    if (op.action !== action) continue;
    for (const m of op.messages) {
      const t = m.payload?.properties?.['t']?.const;
      if (typeof t === 'string') out.set(t, m.payload);
    }
  }
  return out;
}

/** The `t` values written in `{ t: '…' }` literals in the gateway's sources. */
function tsSentByGateway(): Set<string> {
  const dir = path.resolve('src/gateway');
  const found = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    for (const m of readFileSync(path.join(dir, file), 'utf8').matchAll(/\bt: '(\w+)'/g)) found.add(m[1]!);
  }
  found.add((replyControl(1, true, 'x') as { t: string }).t);
  found.add((replyControl(1, false, 'x') as { t: string }).t);
  return found;
}

describe('the gatewire.v1 controls', () => {
  test("the client's controls are those parseClientControl() reads, and each schema's sample parses", () => {
    const fromClient = controlTypes('receive'); // the gateway receives them
    const source = readFileSync(path.resolve('src/protocol/client-protocol.ts'), 'utf8');
    const body = source.slice(source.indexOf('export function parseClientControl'));
    const parsedTs = new Set([...body.slice(0, body.indexOf('\n}\n')).matchAll(/case '(\w+)'/g)].map((m) => m[1]!));
    assert.deepEqual([...fromClient.keys()].sort(), [...parsedTs].sort());
    for (const [t, schema] of fromClient) {
      const control = sample(schema) as Record<string, unknown>;
      if (t === 'req') control['d'] = 'data'; // one of d or b
      if (t === 'hello') Object.assign(control, { token: 'x', seq: 0 });
      const read = parseClientControl(CONTROL_MARK + JSON.stringify(control));
      assert.equal(read?.t, t, `${JSON.stringify(control)} is not read as ${t}`);
    }
    assert.equal(parseClientControl(CONTROL_MARK + JSON.stringify({ t: 'welcome' })), null);
  });

  test("the server's controls are those the gateway sends", () => {
    const fromServer = controlTypes('send');
    assert.deepEqual([...fromServer.keys()].sort(), [...tsSentByGateway()].sort());
    const reply = fromServer.get('reply')!;
    for (const [ok, value] of [
      [true, 'text'],
      [true, new Uint8Array([1])],
      [false, 'boom'],
    ] as const) {
      const control = replyControl(7, ok, value) as Record<string, unknown>;
      for (const field of Object.keys(control)) assert.ok(field in reply.properties!, `reply field ${field}`);
      for (const field of reply.required!) assert.ok(field in control, `reply without ${field}`);
    }
  });
});

test('docs/wire-format.md prints the publish script as it is in src/transport/redis/scripts.ts', () => {
  const block = /### The publish script[\s\S]*?```lua\n([\s\S]*?)```/.exec(WIRE_FORMAT);
  assert.ok(block, 'no lua block under "The publish script"');
  assert.equal(block[1]!.trim(), PUBLISH_SCRIPT.trim());
});
