// onnxruntime-web (WASM execution provider) behind three calls, shared by
// verify-models' ort_web runtime and the demo page. Load after ort.wasm.min.js.
// Tensors cross the page boundary as base64 little-endian float32 bytes, so
// not a bit is lost on the way in or out.
(() => {
  const sessions = new Map();

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

  window.ortRunner = { init, load, run, fromBase64, toBase64 };
})();
