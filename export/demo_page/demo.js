// The demo page: run any exported model on an input the visitor picks, types or
// generates, and show onnxruntime-web's output next to TF eager's stored one.
// Stored tensors arrive as base64 float32; typed numbers are rounded to float32.
(async () => {
  const $ = (id) => document.getElementById(id);
  const status = (text) => { $('status').textContent = text; };
  let demo, loaded = new Set();

  try {
    demo = await (await fetch('demo.json')).json();
    ortRunner.init();
  } catch (e) {
    status(`cannot start: ${e.message} (serve this folder over HTTP: python -m http.server)`);
    return;
  }

  const current = () => demo.models[$('model').value];
  const width = (m) => m.inputs[0].shape.slice(1).reduce((a, b) => a * b, 1);
  // 9 significant digits read back to the same float32, so a stored input survives the textarea.
  const fmt = (v) => Number(v.toPrecision(9)).toString();

  function showInput(f32, rows) {
    const w = f32.length / rows, lines = [];
    for (let r = 0; r < rows; r++) lines.push(Array.from(f32.subarray(r * w, (r + 1) * w), fmt).join(', '));
    $('input').value = lines.join('\n');
  }

  function readInput(m) {
    const w = width(m);
    const rows = $('input').value.split('\n').map((l) => l.trim()).filter(Boolean)
      .map((l) => l.split(/[\s,]+/).filter(Boolean).map(Number));
    if (!rows.length) throw new Error('type at least one row');
    rows.forEach((r, i) => {
      if (r.length !== w) throw new Error(`row ${i + 1} has ${r.length} numbers; ${$('model').value} takes ${w}`);
      if (!r.every(Number.isFinite)) throw new Error(`row ${i + 1} has a value that is not a finite number`);
    });
    return { dims: [rows.length, ...m.inputs[0].shape.slice(1)], data: Float32Array.from(rows.flat()) };
  }

  function sameBits(a, b) {
    if (a.length !== b.length) return false;
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
    return x.every((v, i) => v === y[i]);
  }

  function pickModel() {
    const m = current();
    $('summary').textContent = m.summary;
    $('shape').textContent = `${m.inputs[0].name}: [batch, ${m.inputs[0].shape.slice(1).join(', ')}] float32`;
    $('set').replaceChildren();
    m.sets.forEach((s, i) => {
      const batch = s.inputs[m.inputs[0].name].dims[0];
      const path = s.path ? `, loop ${s.path.iterations}x, ${s.path.branch}` : '';
      $('set').add(new Option(`test_data_set_${i}: ${s.case} (batch ${batch}${path})`, String(i)));
    });
    useSet();
  }

  function useSet() {
    const m = current(), s = m.sets[Number($('set').value)];
    const t = s.inputs[m.inputs[0].name];
    showInput(ortRunner.fromBase64(t.data), t.dims[0]);
    $('result').replaceChildren();
  }

  function randomInput() {
    const m = current(), rows = Math.max(1, Math.min(64, Number($('rows').value) || 1));
    const scale = Number($('scale').value) || 1, f32 = new Float32Array(rows * width(m));
    for (let i = 0; i < f32.length; i++) f32[i] = Math.random() * scale;
    showInput(f32, rows);
    $('result').replaceChildren();
  }

  async function run() {
    const name = $('model').value, m = current();
    let x;
    try { x = readInput(m); } catch (e) { status(e.message); return; }
    status('running...');
    try {
      if (!loaded.has(name)) { await ortRunner.load(name, m.onnx); loaded.add(name); }
      const t0 = performance.now();
      const out = await ortRunner.run(name, { [m.inputs[0].name]: { dims: x.dims, data: ortRunner.toBase64(x.data) } });
      status(`onnxruntime-web ${ort.env.versions?.web ?? ''} (WASM) ran ${name} in ${(performance.now() - t0).toFixed(1)} ms`);
      const match = m.sets.findIndex((s) => sameBits(ortRunner.fromBase64(s.inputs[m.inputs[0].name].data), x.data));
      render(m, out, match);
    } catch (e) {
      status(`${name}: ${e.message}`);
    }
  }

  // Built with textContent only: output names, summaries and numbers come from demo.json (a
  // plugin's model may name an output anything), and none of it may become markup.
  const el = (tag, props = {}, ...children) => {
    const e = document.createElement(tag);
    if (props.text !== undefined) e.textContent = props.text;
    if (props.className) e.className = props.className;
    Object.assign(e.dataset, props.data || {});
    e.append(...children);
    return e;
  };

  function render(m, out, match) {
    const result = $('result'), rows = [];
    let within = true, worst = 0;
    for (const sig of m.outputs) {
      const got = ortRunner.fromBase64(out[sig.name].data);
      let tf = el('span', { className: 'muted', text: 'no stored TF output for this input (pick a stored test input to compare)' });
      let diff = '';
      if (match >= 0) {
        const want = ortRunner.fromBase64(m.sets[match].outputs[sig.name].data);
        let maxAbs = 0, ok = true;
        want.forEach((w, i) => {
          const d = Math.abs(got[i] - w);
          maxAbs = Math.max(maxAbs, d);
          if (d > m.atol && d > m.rtol * Math.abs(w)) ok = false;
        });
        within = within && ok;
        worst = Math.max(worst, maxAbs);
        tf = Array.from(want, fmt).join(', ');
        diff = el('span', { className: ok ? 'ok' : 'bad',
          text: `max abs ${maxAbs.toExponential(2)} ${ok ? '\u2713 within' : '\u2717 beyond'} atol ${m.atol} / rtol ${m.rtol}` });
      }
      rows.push(el('tr', {},
        el('td', {}, el('b', { text: sig.name }), el('br'),
          el('span', { className: 'muted small', text: `[${out[sig.name].dims.join(', ')}]` })),
        el('td', { className: 'values output', data: { output: sig.name, bits: out[sig.name].data },
          text: Array.from(got, fmt).join(', ') }),
        el('td', { className: 'values tf' }, tf),
        el('td', {}, diff)));
    }
    const head = el('tr', {}, el('th', { text: 'output' }), el('th', { text: 'onnxruntime-web, in this browser' }),
      el('th', { text: `TF eager, stored${match >= 0 ? ` (test_data_set_${match})` : ''}` }), el('th', { text: 'difference' }));
    result.replaceChildren(el('table', {}, head, ...rows));
    result.dataset.matchSet = String(match);
    result.dataset.maxAbs = match >= 0 ? String(worst) : '';
    result.dataset.withinTolerance = match >= 0 ? String(within) : '';
    result.dataset.model = $('model').value;
  }

  for (const name of Object.keys(demo.models)) $('model').add(new Option(name, name));
  $('model').addEventListener('change', pickModel);
  $('use-set').addEventListener('click', useSet);
  $('set').addEventListener('change', useSet);
  $('random').addEventListener('click', randomInput);
  $('run').addEventListener('click', run);
  pickModel();
  document.body.dataset.ready = 'true';
})();
