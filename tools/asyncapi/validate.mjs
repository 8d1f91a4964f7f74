// Parses an AsyncAPI document with @asyncapi/parser (what AsyncAPI's code generators use) and prints,
// as one JSON object, its diagnostics and what the parser's model sees of each message. The parser's
// rules do not check an AsyncAPI 3 message's examples against its schemas, so Ajv does that here
// (diagnostics with code "message-example").
//   node validate.mjs ../../schemas/asyncapi.json
// Exit status: 0 when the document parses without errors, 1 when it does not, 2 on bad usage.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const SEVERITY = ["error", "warning", "information", "hint"];

async function main(path) {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), { source: path });
  const report = {
    diagnostics: diagnostics.map((d) => ({
      severity: SEVERITY[d.severity] ?? String(d.severity),
      code: d.code,
      message: d.message,
      path: d.path.join("/"),
    })),
    messages: document ? describeMessages(document) : null,
  };
  if (document) report.diagnostics.push(...checkExamples(document));
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  return document && !report.diagnostics.some((d) => d.severity === "error") ? 0 : 1;
}

function describeMessages(document) {
  return document.channels().all().flatMap((channel) =>
    channel.messages().all().map((message) => {
      const kafka = message.bindings().get("kafka");
      return {
        channel: channel.address(),
        name: message.name(),
        operations: channel.operations().all().map((op) => op.action()),
        payloadProperties: Object.keys(message.payload()?.properties() ?? {}),
        headers: Object.keys(message.headers()?.properties() ?? {}),
        requiredHeaders: message.headers()?.required() ?? [],
        key: kafka ? kafka.value().key ?? null : null,
        correlationId: message.hasCorrelationId() ? message.correlationId().location() : null,
        examples: message.examples().all().length,
      };
    }),
  );
}

function checkExamples(document) {
  // The parser has resolved every $ref: each schema is self-contained. Its own x-parser-* keys are
  // not JSON Schema keywords, hence strict: false.
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const found = [];
  for (const message of document.messages().all()) {
    message.examples().all().forEach((example, index) => {
      for (const [part, schema, value] of [
        ["headers", message.headers(), example.headers()],
        ["payload", message.payload(), example.payload()],
      ]) {
        if (!schema || value === undefined) continue;
        const validate = ajv.compile(schema.json());
        if (!validate(value)) {
          found.push({
            severity: "error",
            code: "message-example",
            message: ajv.errorsText(validate.errors),
            path: `components/messages/${message.id()}/examples/${index}/${part}`,
          });
        }
      }
    });
  }
  return found;
}

if (process.argv.length !== 3) {
  process.stderr.write("usage: node validate.mjs ASYNCAPI_FILE\n");
  process.exit(2);
}
process.exit(await main(process.argv[2]));
