// onnxruntime-web (WASM execution provider) behind a few calls, shared by
// verify-models' ort_web runtime and the demo page. Load after ort.wasm.min.js.
// verify-models hands tensors over as raw little-endian bytes with their type
// (runFromServer: fetched from and POSTed to the run's loopback server); the
// demo page as base64 float32 (run). Either way not a bit is lost.
(() => {
  const sessions = new Map();
  // onnxruntime's tensor type -> the typed array holding its data (bool as bytes, float16 as its bits)
  const ARRAYS = {
    float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array,
    uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
    bool: Uint8Array, float16: Uint16Array,
  };

  function fromBase64(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function toBase64(f32) {
    const bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }

  // One thread: a page served without cross-origin isolation (python -m http.server)
  // has no SharedArrayBuffer, and one thread keeps results independent of the machine.
  function init() {
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    return ort.env.versions?.web ?? 'unknown';
  }

  async function load(key, url) {
    const session = await ort.InferenceSession.create(url, { executionProviders: ['wasm'] });
    sessions.set(key, session);
    return { inputs: session.inputNames, outputs: session.outputNames };
  }

  // feeds: {name: {dims, data: base64 float32}} -> {name: {dims, type, data: base64}}
  async function run(key, feeds) {
    const session = sessions.get(key);
    if (!session) throw new Error(`no model loaded under ${key}`);
    const tensors = {};
    for (const [name, t] of Object.entries(feeds)) tensors[name] = new ort.Tensor('float32', fromBase64(t.data), t.dims);
    const results = await session.run(tensors);
    const outputs = {};
    for (const [name, t] of Object.entries(results)) outputs[name] = { dims: t.dims, type: t.type, data: toBase64(t.data) };
    return outputs;
  }

  // feeds: {name: {url, type, dims}}; each output's bytes are POSTed to outBase + its index.
  // Returns [{name, type, dims}], in the order posted.
  async function runFromServer(key, feeds, outBase) {
    const session = sessions.get(key);
    if (!session) throw new Error(`no model loaded under ${key}`);
    const tensors = {};
    for (const [name, t] of Object.entries(feeds)) {
      const Array = ARRAYS[t.type];
      if (!Array) throw new Error(`input ${name}: type ${t.type} is not supported here`);
      const response = await fetch(t.url);
      if (!response.ok) throw new Error(`input ${name}: the server answered ${response.status}`);
      tensors[name] = new ort.Tensor(t.type, new Array(await response.arrayBuffer()), t.dims);
    }
    const results = await session.run(tensors);
    const outputs = [];
    for (const [name, t] of Object.entries(results)) {
      if (!ARRAYS[t.type]) throw new Error(`output ${name} has type ${t.type}, which cannot be returned`);
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const response = await fetch(outBase + outputs.length, { method: 'POST', body: bytes });
      if (!response.ok) throw new Error(`output ${name}: the server answered ${response.status}`);
      outputs.push({ name, type: t.type, dims: t.dims });
    }
    return outputs;
  }

  window.ortRunner = { init, load, run, runFromServer, fromBase64, toBase64 };
})();
