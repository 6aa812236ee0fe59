// An onnxruntime-node server for verify-models: one process serves every model of a run.
// Usage: node infer.mjs <request fd> <reply fd>
//
// Requests and replies travel on two pipes of their own (the fds given), never on
// stdin/stdout: anything else that writes to stdout (a NODE_OPTIONS=--require hook
// that logs) cannot break the protocol. Each message is a frame:
//   u32 little-endian header length, the header (JSON), then the tensors' raw bytes, in header order.
// Request header: {"model": "path/model.onnx", "inputs": [{"name", "type", "dims", "nbytes"}]}
//   ("inputs" left out: only load the model).
// Reply header: {"outputs": [{"name", "type", "dims", "nbytes"}]}, {"loaded": true} or {"error": "..."}.
// The first reply is {"ready": <onnxruntime version>}. Tensors keep their type (float32, int32,
// int64, bool, float16, float64, ...), little-endian, so nothing is lost on the way.
import fs from 'node:fs';
import ort from 'onnxruntime-node';

const [requestFd, replyFd] = process.argv.slice(2).map(Number);
const sessions = new Map();

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array,
  uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array, float16: Uint16Array,
};

function send(header, tensors = []) {
  const head = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(head.length);
  for (const part of [length, head, ...tensors]) {
    for (let done = 0; done < part.length;) {
      try {
        done += fs.writeSync(replyFd, part, done);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
      }
    }
  }
}

function toTensor(spec, bytes) {
  const Array = ARRAYS[spec.type];
  if (!Array) throw new Error(`input ${spec.name}: type ${spec.type} is not supported here`);
  const copy = new Uint8Array(bytes.length);  // a Buffer's pool offset need not be aligned for the type
  copy.set(bytes);
  return new ort.Tensor(spec.type, new Array(copy.buffer), spec.dims);
}

function fromTensor(t) {
  if (!ARRAYS[t.type]) throw new Error(`output of type ${t.type} cannot be returned`);
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

async function handle(header, payload) {
  if (!sessions.has(header.model)) {
    sessions.set(header.model, await ort.InferenceSession.create(header.model, { executionProviders: ['cpu'] }));
  }
  if (!header.inputs) return send({ loaded: true });
  const feeds = {};
  let offset = 0;
  for (const spec of header.inputs) {
    feeds[spec.name] = toTensor(spec, payload.subarray(offset, offset + spec.nbytes));
    offset += spec.nbytes;
  }
  const results = await sessions.get(header.model).run(feeds);
  const outputs = [], data = [];
  for (const [name, t] of Object.entries(results)) {
    const bytes = fromTensor(t);
    outputs.push({ name, type: t.type, dims: t.dims, nbytes: bytes.length });
    data.push(bytes);
  }
  send({ outputs }, data);
}

// Frames arrive in chunks of any size: gather them, then handle one complete frame at a time, in order.
let chunks = [], buffered = 0, frame = null, busy = Promise.resolve();
function joined() {
  if (chunks.length !== 1) chunks = [Buffer.concat(chunks, buffered)];
  return chunks[0];
}
function take(n) {  // the first n buffered bytes
  const all = joined();
  chunks = all.length > n ? [all.subarray(n)] : [];
  buffered -= n;
  return all.subarray(0, n);
}
function pump() {
  for (;;) {
    if (frame === null) {
      if (buffered < 4) return;
      const length = joined().readUInt32LE(0);
      if (buffered < 4 + length) return;
      take(4);
      const header = JSON.parse(take(length).toString('utf8'));
      frame = { header, size: (header.inputs ?? []).reduce((n, t) => n + t.nbytes, 0) };
    }
    if (buffered < frame.size) return;
    const { header } = frame, payload = take(frame.size);
    frame = null;
    busy = busy.then(() => handle(header, payload))
      .catch((e) => send({ error: String(e?.message ?? e).split('\n')[0] }));
  }
}

send({ ready: ort.env.versions?.common ?? 'unknown' });
fs.createReadStream(null, { fd: requestFd, highWaterMark: 1 << 20 })
  .on('data', (chunk) => { chunks.push(chunk); buffered += chunk.length; pump(); })
  .on('end', () => busy.then(() => process.exit(0)));
