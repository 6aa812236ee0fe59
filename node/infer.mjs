// A line-oriented onnxruntime-node server for verify-models: one process serves every model.
// Usage: node infer.mjs
// Each stdin line: {"model": "path/model.onnx", "feeds": {name: {"dims": [...], "data": base64 float32 LE}}}
//   ("feeds" may be left out to only load the model).
// Each stdout line: {"outputs": {name: {"dims": [...], "type": "float32", "data": base64}}},
//   {"loaded": true} or {"error": "..."}. The first line is {"ready": <onnxruntime version>}.
import readline from 'node:readline';
import ort from 'onnxruntime-node';

const sessions = new Map();
process.stdout.write(JSON.stringify({ ready: ort.env.versions?.common ?? 'unknown' }) + '\n');

function decode(t) {
  const bytes = Buffer.from(t.data, 'base64');
  const copy = new ArrayBuffer(bytes.length);  // Buffer's pool offset need not be 4-aligned
  new Uint8Array(copy).set(bytes);
  return new ort.Tensor('float32', new Float32Array(copy), t.dims);
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  try {
    const request = JSON.parse(line);
    if (!sessions.has(request.model)) {
      sessions.set(request.model, await ort.InferenceSession.create(request.model, { executionProviders: ['cpu'] }));
    }
    if (!request.feeds) {
      process.stdout.write(JSON.stringify({ loaded: true }) + '\n');
      continue;
    }
    const feeds = Object.fromEntries(Object.entries(request.feeds).map(([k, v]) => [k, decode(v)]));
    const results = await sessions.get(request.model).run(feeds);
    const outputs = {};
    for (const [name, t] of Object.entries(results)) {
      outputs[name] = { dims: t.dims, type: t.type,
        data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64') };
    }
    process.stdout.write(JSON.stringify({ outputs }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e?.message ?? e).split('\n')[0] }) + '\n');
  }
}
