// flowlearn playground: draws the input a model's serving_default signature takes, sends it to the REST
// :predict endpoint every client uses, and shows the answer. No framework, no build step, nothing fetched from
// anywhere but this server. Text from the model or the user is only ever written with textContent.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // MNIST's digits were scaled into 20 x 20 inside 28 x 28; other sizes keep that ratio.
  const BOX_RATIO = 20 / 28;
  const INK = 0.05; // grey level below which a pixel is background when finding the drawing's bounding box

  const $ = (id) => document.getElementById(id);
  let view = null;
  let latest = 0; // number of the newest request: older answers arriving late are dropped

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // The JSON of a response; an error status throws the server's {"error": ...} message.
  async function payloadOf(response) {
    const payload = await response.json();
    if (!response.ok) {
      throw new Error(payload && payload.error ? payload.error : "HTTP " + response.status);
    }
    return payload;
  }

  async function postJSON(url, body) {
    return payloadOf(await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    }));
  }

  // -- resampling -------------------------------------------------------------------------------------------
  // Area-average weights mapping `size` source pixels starting at `start` onto `count` target pixels.
  function areaWeights(start, size, count) {
    const weights = [];
    const step = size / count;
    for (let t = 0; t < count; t++) {
      const lo = start + t * step, hi = lo + step, taps = [];
      for (let s = Math.floor(lo); s < Math.ceil(hi); s++) {
        const cover = Math.min(hi, s + 1) - Math.max(lo, s);
        if (cover > 0) taps.push([s, cover / step]);
      }
      weights.push(taps);
    }
    return weights;
  }

  // One channel (Float32Array, row-major, `width` wide) of a source rectangle resampled to th x tw.
  function resample(plane, width, x0, y0, bw, bh, tw, th) {
    const cols = areaWeights(x0, bw, tw), rows = areaWeights(y0, bh, th);
    const out = new Float32Array(tw * th);
    for (let ty = 0; ty < th; ty++) {
      for (const [sy, wy] of rows[ty]) {
        const base = sy * width;
        for (let tx = 0; tx < tw; tx++) {
          let sum = 0;
          for (const [sx, wx] of cols[tx]) sum += plane[base + sx] * wx;
          out[ty * tw + tx] += sum * wy;
        }
      }
    }
    return out;
  }

  function planes(canvas, channels) {
    const {width, height} = canvas;
    const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    const out = [];
    if (channels === 1) {
      // The brightest channel: white ink on black, whatever colour a loaded file had.
      const grey = new Float32Array(width * height);
      for (let i = 0; i < grey.length; i++) {
        grey[i] = Math.max(data[4 * i], data[4 * i + 1], data[4 * i + 2]) / 255;
      }
      out.push(grey);
    } else {
      for (let c = 0; c < channels; c++) {
        const plane = new Float32Array(width * height);
        for (let i = 0; i < plane.length; i++) plane[i] = data[4 * i + c] / 255;
        out.push(plane);
      }
    }
    return out;
  }

  // The MNIST recipe: the drawing's bounding box scaled (keeping its aspect) to fit BOX_RATIO of the input,
  // placed so that its centre of mass is the input's centre. Returns a Float32Array of h x w in [0, 1], or null
  // for an empty canvas.
  function mnistInput(canvas, h, w) {
    const [grey] = planes(canvas, 1);
    const {width, height} = canvas;
    let top = height, bottom = -1, left = width, right = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (grey[y * width + x] > INK) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    if (bottom < 0) return null;
    const bw = right - left + 1, bh = bottom - top + 1;
    const scale = Math.min(Math.round(h * BOX_RATIO) / bh, Math.round(w * BOX_RATIO) / bw);
    const tw = Math.max(1, Math.round(bw * scale)), th = Math.max(1, Math.round(bh * scale));
    const small = resample(grey, width, left, top, bw, bh, tw, th);
    let mass = 0, my = 0, mx = 0;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        const v = small[y * tw + x];
        mass += v; my += v * (y + 0.5); mx += v * (x + 0.5);
      }
    }
    const oy = Math.round(h / 2 - my / mass), ox = Math.round(w / 2 - mx / mass);
    const out = new Float32Array(h * w);
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        const ty = y + oy, tx = x + ox;
        if (ty >= 0 && ty < h && tx >= 0 && tx < w) out[ty * w + tx] = Math.min(1, small[y * tw + x]);
      }
    }
    return out;
  }

  // A colour model's input: the whole canvas resized to h x w (stretched, as Keras' load_img(target_size=...)).
  function colourInput(canvas, h, w, channels) {
    return planes(canvas, channels).map((plane) => resample(plane, canvas.width, 0, 0, canvas.width,
                                                             canvas.height, w, h));
  }

  // -- drawing what the model sees ---------------------------------------------------------------------------
  function paint(canvas, chans, h, w) {
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      for (let c = 0; c < 3; c++) {
        const plane = chans[chans.length === 1 ? 0 : c];
        image.data[4 * i + c] = Math.round(255 * Math.max(0, Math.min(1, plane[i])));
      }
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  function blank(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  // -- image input -------------------------------------------------------------------------------------------
  function imageInstance() {
    const spec = view.input, canvas = $("canvas");
    const h = spec.height, w = spec.width;
    const chans = spec.channels === 1 ? [mnistInput(canvas, h, w)] : colourInput(canvas, h, w, spec.channels);
    if (chans[0] === null) return null;
    paint($("model-input"), chans, h, w);
    const integer = spec.scale !== 1;
    const value = (plane, i) => (integer ? Math.round(plane[i] * spec.scale) : plane[i] * spec.scale);
    if (spec.flat) {
      // A flattened square image (an input of H * W features): the pixels row by row.
      return Array.from(chans[0], (_, i) => value(chans[0], i));
    }
    const rows = [];
    for (let y = 0; y < h; y++) {
      const row = [];
      for (let x = 0; x < w; x++) {
        const pixel = chans.map((plane) => value(plane, y * w + x));
        row.push(spec.channel_axis ? pixel : pixel[0]);
      }
      rows.push(row);
    }
    return rows;
  }

  function setUpCanvas() {
    const canvas = $("canvas");
    const ctx = canvas.getContext("2d");
    blank(canvas);
    let last = null;

    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width,
              (event.clientY - box.top) * canvas.height / box.height];
    };
    const line = (from, to) => {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = canvas.width / 14;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(from[0], from[1]);
      ctx.lineTo(to[0], to[1]);
      ctx.stroke();
    };
    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      last = point(event);
      line(last, last);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (last === null) return;
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const e of events.length ? events : [event]) {
        const next = point(e);
        line(last, next);
        last = next;
      }
    });
    const end = () => {
      if (last === null) return;
      last = null;
      predict();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    $("clear").addEventListener("click", () => {
      blank(canvas);
      blank($("model-input"));
      blank($("reconstruction"));
      latest++; // an answer still on its way is for the old drawing
      clearOutput();
    });
    $("file").addEventListener("change", () => {
      const file = $("file").files[0];
      if (!file) return;
      const url = URL.createObjectURL(file);
      const image = new Image();
      image.addEventListener("load", () => {
        blank(canvas);
        if (view.input.channels === 1) {
          // Fit inside the canvas; a dark-on-light picture is inverted to MNIST's light-on-dark.
          const s = Math.min(canvas.width / image.width, canvas.height / image.height);
          const dw = image.width * s, dh = image.height * s;
          ctx.drawImage(image, (canvas.width - dw) / 2, (canvas.height - dh) / 2, dw, dh);
          invertIfLight(canvas, (canvas.width - dw) / 2, (canvas.height - dh) / 2, dw, dh);
        } else {
          ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
        }
        URL.revokeObjectURL(url);
        predict();
      });
      image.addEventListener("error", () => setStatus("cannot read " + file.name + " as an image", true));
      image.src = url;
    });
  }

  function invertIfLight(canvas, x, y, w, h) {
    const ctx = canvas.getContext("2d");
    const box = ctx.getImageData(Math.floor(x), Math.floor(y), Math.max(1, Math.round(w)), Math.max(1, Math.round(h)));
    const d = box.data, bw = box.width, bh = box.height;
    let edge = 0, n = 0;
    for (let i = 0; i < bw * bh; i++) {
      const px = i % bw, py = Math.floor(i / bw);
      if (px === 0 || py === 0 || px === bw - 1 || py === bh - 1) {
        edge += (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 765;
        n++;
      }
    }
    if (edge / n <= 0.5) return;
    for (let i = 0; i < bw * bh; i++) {
      for (let c = 0; c < 3; c++) d[4 * i + c] = 255 - d[4 * i + c];
    }
    ctx.putImageData(box, Math.floor(x), Math.floor(y));
  }

  // -- tabular input -----------------------------------------------------------------------------------------
  function setUpForm() {
    const form = $("form");
    view.input.fields.forEach((field, k) => {
      const id = "field-" + k;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = field.label;
      let control;
      if (field.type === "select") {
        control = document.createElement("select");
        for (const option of field.options) {
          const item = document.createElement("option");
          item.value = option;
          item.textContent = option;
          control.appendChild(item);
        }
      } else {
        control = document.createElement("input");
        control.type = field.type === "number" ? "number" : "text";
        if (field.step) control.step = field.step;
      }
      control.id = id;
      control.name = field.label;
      control.value = String(field.value);
      control.addEventListener("input", schedule);
      control.addEventListener("change", schedule);
      form.appendChild(label);
      form.appendChild(control);
    });
    form.addEventListener("submit", (event) => event.preventDefault());
  }

  function fieldValue(field, k) {
    const text = $("field-" + k).value;
    if (!field.numeric) return text;
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) {
      throw new Error(field.label + ": expected a number; received " + JSON.stringify(text));
    }
    return value;
  }

  function formInstance() {
    const values = {};
    view.input.fields.forEach((field, k) => {
      const value = fieldValue(field, k);
      if (field.index === null) {
        values[field.input] = value;
      } else {
        (values[field.input] = values[field.input] || [])[field.index] = value;
      }
    });
    const names = view.signature.inputs.map((spec) => spec.name);
    return names.length === 1 ? values[names[0]] : values;
  }

  let timer = null;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(predict, 120);
  }

  // -- answers -----------------------------------------------------------------------------------------------
  function clearOutput() {
    $("prediction").textContent = "";
    $("prediction-note").textContent = "";
    $("chart").replaceChildren();
    $("feature-maps").replaceChildren();
    $("values").replaceChildren();
    $("values").hidden = true;
    $("raw").hidden = true;
    setStatus(view.input.kind === "image" ? "draw in the black square" : "");
  }

  function softmax(values) {
    const top = Math.max(...values);
    const e = values.map((v) => Math.exp(v - top));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  }

  function barChart(labels, probabilities, topIndex) {
    const n = probabilities.length;
    const slot = Math.max(18, Math.min(110, Math.floor(520 / n)));
    const fits = Math.max(2, Math.floor(slot / 7.5)); // characters of a label that fit under its bar
    const height = 160, bottom = 20, topPad = 18, width = slot * n;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + (height + bottom + topPad));
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height + bottom + topPad));
    svg.setAttribute("role", "img");
    const title = document.createElementNS(SVG, "title");
    title.textContent = "probability of each class";
    svg.appendChild(title);
    probabilities.forEach((p, i) => {
      const h = Math.max(0, Math.min(1, p)) * height;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", i === topIndex ? "bar top" : "bar");
      bar.setAttribute("x", String(i * slot + 3));
      bar.setAttribute("y", String(topPad + height - h));
      bar.setAttribute("width", String(slot - 6));
      bar.setAttribute("height", String(h));
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = labels[i] + ": " + p.toFixed(4);
      bar.appendChild(tip);
      svg.appendChild(bar);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", String(i * slot + slot / 2));
      label.setAttribute("y", String(topPad + height + 15));
      label.setAttribute("text-anchor", "middle");
      label.textContent = labels[i].length > fits ? labels[i].slice(0, fits - 1) + "\u2026" : labels[i];
      svg.appendChild(label);
      if (i === topIndex) {
        const value = document.createElementNS(SVG, "text");
        value.setAttribute("x", String(i * slot + slot / 2));
        value.setAttribute("y", String(topPad + height - h - 4));
        value.setAttribute("text-anchor", "middle");
        value.textContent = p.toFixed(2);
        svg.appendChild(value);
      }
    });
    $("chart").replaceChildren(svg);
  }

  function pick(prediction, name) {
    // One output comes back as its value; several as an object of outputs (TF Serving's row format).
    return view.signature.outputs.length === 1 ? prediction : prediction[name];
  }

  function formatNumber(v) {
    return typeof v === "number" ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4)
                                                                                         : v.toFixed(4)) : String(v);
  }

  function table(rows, head) {
    const values = $("values");
    values.replaceChildren();
    const header = document.createElement("tr");
    for (const text of head) {
      const th = document.createElement("th");
      th.textContent = text;
      header.appendChild(th);
    }
    values.appendChild(header);
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = typeof cell === "number" ? formatNumber(cell) : String(cell);
        tr.appendChild(td);
      }
      values.appendChild(tr);
    }
    values.hidden = false;
  }

  function show(prediction) {
    const out = view.output;
    if (out.kind === "classes") {
      let scores = pick(prediction, out.scores).map(Number);
      let probabilities = out.probabilities;
      if (probabilities === null) {
        const sum = scores.reduce((a, b) => a + b, 0);
        probabilities = scores.every((v) => v >= 0) && Math.abs(sum - 1) < 1e-3;
      }
      if (!probabilities) scores = softmax(scores);
      let top = 0;
      scores.forEach((v, i) => { if (v > scores[top]) top = i; });
      $("prediction").textContent = out.labels[top];
      $("prediction-note").textContent = (probabilities ? "probability " : "softmax of the outputs: ") +
        scores[top].toFixed(3);
      barChart(out.labels, scores, top);
    } else if (out.kind === "value") {
      const value = pick(prediction, out.output);
      $("prediction").textContent = Array.isArray(value) ? value.map(formatNumber).join(", ") : formatNumber(value);
      $("prediction-note").textContent = "predicted value (" + out.output + ")";
    } else if (out.kind === "autoencoder") {
      const error = -Number(prediction[out.scores]);
      $("prediction").textContent = formatNumber(error);
      $("prediction-note").textContent =
        "anomaly score: the mean squared reconstruction error (higher is more unusual)";
      const reconstruction = prediction[out.reconstruction];
      if (view.input.kind === "image") {
        const h = view.input.height, w = view.input.width, c = view.input.channel_axis ? view.input.channels : 1;
        const flat = reconstruction.flat(2).map((v) => Number(v) / view.input.scale);
        const chans = [];
        for (let k = 0; k < c; k++) chans.push(Float32Array.from({length: h * w}, (_, i) => flat[i * c + k]));
        paint($("reconstruction"), chans, h, w);
      } else {
        const flat = [].concat(reconstruction);
        table(view.input.fields.map((f, i) => [f.label, fieldValue(f, i), Number(flat[i])]),
              ["feature", "input", "reconstruction"]);
      }
    } else {
      const raw = $("raw");
      raw.textContent = JSON.stringify(prediction, null, 1);
      raw.hidden = false;
      $("prediction").textContent = "";
    }
  }

  function drawFeatureMaps(maps) {
    const [h, w, f] = view.feature_maps.shape;
    const grid = $("feature-maps");
    const canvases = [];
    for (let k = 0; k < f; k++) {
      const plane = new Float32Array(h * w);
      let top = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const v = Number(maps[y][x][k]);
          plane[y * w + x] = v;
          if (v > top) top = v;
        }
      }
      // Each map on its own scale (as imshow), so a weak filter's pattern still shows.
      if (top > 0) for (let i = 0; i < plane.length; i++) plane[i] = Math.max(0, plane[i]) / top;
      const canvas = document.createElement("canvas");
      paint(canvas, [plane], h, w);
      canvas.title = "filter " + k;
      canvases.push(canvas);
    }
    grid.replaceChildren(...canvases);
  }

  async function predict() {
    let instance;
    try {
      instance = view.input.kind === "image" ? imageInstance() : formInstance();
    } catch (error) {
      setStatus(error.message, true);
      return;
    }
    if (instance === null) {
      clearOutput();
      return;
    }
    const number = ++latest;
    setStatus("asking the model\u2026");
    try {
      const asked = [postJSON(view.predict_url, {instances: [instance]})];
      if (view.feature_maps) {
        asked.push(postJSON(view.predict_url, {signature_name: view.feature_maps.signature,
                                               instances: [instance]}));
      }
      const [answer, mapsAnswer] = await Promise.all(asked);
      const maps = mapsAnswer ? mapsAnswer.predictions[0] : null;
      if (number !== latest) return; // a newer drawing or edit has been sent since
      show(answer.predictions[0]);
      if (maps !== null) drawFeatureMaps(maps);
      $("feature-maps-panel").hidden = !view.feature_maps;
      setStatus("");
    } catch (error) {
      if (number === latest) setStatus(error.message, true);
    }
  }

  // -- start -------------------------------------------------------------------------------------------------
  async function start() {
    view = await payloadOf(await fetch(document.body.dataset.view));
    const inputs = view.signature.inputs.map((s) => s.name + ": " + s.dtype + " [" +
      s.shape.map((d) => (d === null ? "None" : d)).join(", ") + "]");
    $("signature").textContent = "version " + view.version + " \u00b7 serving_default (" +
      view.signature.method_name + "): " + inputs.join(", ");
    if (view.input.kind === "unsupported") {
      setStatus("no playground for this signature: " + view.input.reason, true);
      return;
    }
    $("input-panel").hidden = false;
    $("output-panel").hidden = false;
    if (view.input.kind === "image") {
      $("image-input").hidden = false;
      $("draw-note").textContent = view.input.channels === 1
        ? "Draw with the mouse, a pen or a finger; the drawing is scaled into the middle " +
          Math.round(view.input.height * BOX_RATIO) + " x " + Math.round(view.input.width * BOX_RATIO) +
          " pixels and centred by its centre of mass, as the MNIST digits were."
        : "Draw, or pick an image file; it is resized to " + view.input.height + " x " + view.input.width + ".";
      $("reconstruction-figure").hidden = view.output.kind !== "autoencoder";
      blank($("model-input"));
      blank($("reconstruction"));
      setUpCanvas();
      clearOutput();
    } else {
      $("form").hidden = false;
      setUpForm();
      predict();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => setStatus("cannot load the playground: " + error.message, true));
  });
})();
