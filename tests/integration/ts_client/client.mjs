// Spawns research-mcp over stdio with the official TypeScript SDK client, lists the tools, calls
// lab_info and read_file, and prints one JSON object for the Python test to check.
// Usage: node client.mjs <research-mcp command> <workspace>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, workspace] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args: ["serve", "--workspace", workspace], stderr: "pipe" });
const client = new Client({ name: "ts-sdk-test", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
const lab = await client.callTool({ name: "lab_info", arguments: {} });
const read = await client.callTool({ name: "read_file", arguments: { path: "hello.txt" } });
const escape = await client.callTool({ name: "read_file", arguments: { path: "../../etc/passwd" } });
process.stdout.write(JSON.stringify({
  server: client.getServerVersion(),
  protocol: transport.protocolVersion ?? null,
  tools: tools.tools.map((t) => ({ name: t.name, hasOutputSchema: Boolean(t.outputSchema), readOnly: t.annotations?.readOnlyHint ?? null })),
  lab: lab.structuredContent,
  read: read.structuredContent,
  escape: { isError: escape.isError ?? false, text: escape.content?.[0]?.text ?? "" },
}) + "\n");
await client.close();
