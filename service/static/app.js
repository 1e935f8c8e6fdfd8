/* Lantern web viewer: plain JavaScript against the public v1 API (no build step). */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 250;

  const state = {
    models: [], // ModelInfo[]
    methods: [], // MethodInfo[]
    paramFields: [], // {name, get(): value | undefined}
    image: null, // {blob, name, img: HTMLImageElement, url}
    job: null, // id of the job being followed or shown
    pollToken: 0,
    result: null, // {job, summary}
    heat: null, // {key, img}
    heatToken: 0,
    predictToken: 0,
  };

  // ---------------------------------------------------------------- API and errors

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new ApiError(0, "network_error", "Lantern could not be reached: " + e.message);
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      if (body && typeof body.code === "string") {
        throw new ApiError(response.status, body.code, body.message || "", body.details);
      }
      throw new ApiError(response.status, "http_error", "HTTP " + response.status);
    }
    return response;
  }

  async function apiJson(path, options) {
    return (await api(path, options)).json();
  }

  function showError(err) {
    const code = err instanceof ApiError ? err.code : "error";
    $("error-code").textContent = code;
    $("error-message").textContent = err.message || String(err);
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
  }

  function guarded(fn) {
    return async function (...args) {
      try {
        await fn.apply(this, args);
      } catch (e) {
        showError(e);
      }
    };
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  function fmtNumber(x) {
    if (typeof x !== "number" || !isFinite(x)) return String(x);
    if (Number.isInteger(x)) return String(x);
    const a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(3);
    return x.toPrecision(4).replace(/\.?0+$/, "");
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new ApiError(0, "invalid_image", "The browser cannot display this image."));
      img.src = url;
    });
  }

  function currentModel() {
    return state.models.find((m) => m.name === $("model").value) || null;
  }

  function currentMethod() {
    return state.methods.find((m) => m.name === $("method").value) || null;
  }

  function updateRunButton() {
    $("run").disabled = !(state.image && currentModel() && currentMethod());
  }

  // ---------------------------------------------------------------- models

  async function loadModels(select) {
    const body = await apiJson("/v1/models");
    state.models = body.models;
    const sel = $("model");
    const previous = select || sel.value;
    sel.replaceChildren(
      ...state.models.map((m) =>
        el("option", { value: m.name, text: m.name + (m.builtin ? " (built-in)" : "") })
      )
    );
    if (previous && state.models.some((m) => m.name === previous)) sel.value = previous;
    onModelChange();
  }

  function onModelChange() {
    const m = currentModel();
    if (!m) {
      $("model-info").textContent = state.models.length ? "" : "No models registered yet.";
      updateRunButton();
      return;
    }
    const [h, w] = m.manifest.input_size;
    $("model-info").textContent =
      `${h}×${w} ${m.manifest.layout} · ${m.manifest.labels.length} labels · ` +
      `${fmtBytes(m.size_bytes)} · version ${m.version.slice(0, 10)}`;
    const labels = $("labels");
    labels.replaceChildren(...m.manifest.labels.map((l) => el("option", { value: l })));
    $("target-index").max = String(m.manifest.labels.length - 1);
    refreshLayerLists();
    updateRunButton();
    predict();
  }

  async function uploadModel() {
    clearError();
    const file = $("model-file").files[0];
    if (!file) throw new ApiError(0, "missing_file", "Choose an .onnx file to upload.");
    const manifest = $("model-manifest").value;
    try {
      JSON.parse(manifest);
    } catch (e) {
      throw new ApiError(0, "invalid_manifest", "The manifest is not valid JSON: " + e.message);
    }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("manifest", manifest);
    const btn = $("model-upload");
    btn.disabled = true;
    try {
      const info = await apiJson("/v1/models", { method: "POST", body: form });
      await loadModels(info.name);
      $("upload-model").open = false;
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- image

  async function setImage(blob, name) {
    clearError();
    const url = URL.createObjectURL(blob);
    let img;
    try {
      img = await loadImage(url);
    } catch (e) {
      URL.revokeObjectURL(url);
      throw e;
    }
    if (state.image) URL.revokeObjectURL(state.image.url);
    state.image = { blob, name, img, url };
    $("image-info").textContent =
      `${name} · ${img.naturalWidth}×${img.naturalHeight} · ${fmtBytes(blob.size)}`;
    resetResult();
    draw();
    updateRunButton();
    predict();
  }

  async function useSample() {
    const r = await api("/static/samples/chelsea.jpg");
    await setImage(await r.blob(), "chelsea.jpg");
  }

  // ---------------------------------------------------------------- predictions

  async function predict() {
    const m = currentModel();
    const tbody = $("predictions").tBodies[0];
    if (!m || !state.image) return;
    const token = ++state.predictToken;
    const form = new FormData();
    form.append("file", state.image.blob, state.image.name);
    form.append("top_k", "5");
    let body;
    try {
      body = await apiJson(`/v1/models/${encodeURIComponent(m.name)}/predict`, {
        method: "POST",
        body: form,
      });
    } catch (e) {
      if (token === state.predictToken) {
        tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { text: "No predictions." })));
        showError(e);
      }
      return;
    }
    if (token !== state.predictToken) return;
    tbody.replaceChildren(
      ...body.predictions.map((p, i) => {
        const pct = (p.score * 100).toFixed(1) + "%";
        return el(
          "tr",
          {
            "data-index": p.index,
            title: `class ${p.index}: ${p.label} (logit ${fmtNumber(p.logit)})`,
            onclick: () => chooseTarget(p.index),
          },
          el("td", { class: "rank", text: String(i + 1) }),
          el("td", { class: "label", text: p.label }),
          el("td", { class: "idx num", text: "#" + p.index }),
          el(
            "td",
            { class: "num pct" },
            el(
              "div",
              { class: "score" },
              el("span", { class: "mini" }, el("i", { style: `width:${p.score * 100}%` })),
              el("span", { text: pct })
            )
          )
        );
      })
    );
    markSelectedPrediction();
  }

  function chooseTarget(index) {
    $("target-kind").value = "index";
    $("target-index").value = String(index);
    onTargetKind();
  }

  function markSelectedPrediction() {
    const kind = $("target-kind").value;
    const idx = $("target-index").value;
    for (const tr of $("predictions").tBodies[0].rows) {
      tr.classList.toggle("selected", kind === "index" && tr.dataset.index === idx);
    }
  }

  // ---------------------------------------------------------------- methods and params form

  async function loadMethods() {
    const body = await apiJson("/v1/methods");
    state.methods = body.methods.filter((m) => m.modality === "image");
    $("method").replaceChildren(
      ...state.methods.map((m) => el("option", { value: m.name, text: `${m.name} (${m.kind})` }))
    );
    onMethodChange();
  }

  function onMethodChange() {
    const m = currentMethod();
    $("method-info").textContent = m ? m.description : "";
    renderParams(m ? m.params_schema : { properties: {} });
    updateRunButton();
  }

  function resolveSchema(prop, root) {
    let p = prop || {};
    for (let i = 0; i < 8 && p.$ref; i++) {
      const name = p.$ref.split("/").pop();
      const target = (root.$defs || root.definitions || {})[name] || {};
      const { $ref, ...rest } = p;
      p = { ...target, ...rest };
    }
    if (Array.isArray(p.allOf) && p.allOf.length === 1) {
      const { allOf, ...rest } = p;
      p = { ...resolveSchema(allOf[0], root), ...rest };
    }
    return p;
  }

  function isColourArray(s) {
    const items = s.prefixItems || (Array.isArray(s.items) ? s.items : null);
    const single = !Array.isArray(s.items) && s.items ? s.items : null;
    const intIn255 = (x) => x && x.type === "integer" && x.minimum === 0 && x.maximum === 255;
    return (
      s.type === "array" &&
      (s.minItems === 3 || (items && items.length === 3)) &&
      (items ? items.every(intIn255) : intIn255(single))
    );
  }

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function rgbToHex(rgb) {
    return "#" + rgb.map((c) => Number(c).toString(16).padStart(2, "0")).join("");
  }

  function numberInput(name, s, def) {
    const input = el("input", {
      type: "number",
      name,
      min: s.minimum !== undefined ? s.minimum : s.exclusiveMinimum,
      max: s.maximum !== undefined ? s.maximum : s.exclusiveMaximum,
      step: s.type === "integer" ? 1 : "any",
      value: def !== undefined && def !== null ? def : "",
      placeholder: def === undefined || def === null ? "auto" : null,
    });
    const get = () => {
      if (input.value.trim() === "") return undefined;
      const v = Number(input.value);
      if (!isFinite(v)) throw new ApiError(0, "invalid_params", `${name}: not a number.`);
      return s.type === "integer" ? Math.round(v) : v;
    };
    return { input, get };
  }

  function selectInput(name, options, def) {
    const input = el("select", { name });
    for (const o of options) input.append(el("option", { value: JSON.stringify(o), text: String(o) }));
    if (def !== undefined) input.value = JSON.stringify(def);
    return { input, get: () => JSON.parse(input.value) };
  }

  /** One control for a JSON-schema property: {node, get()}. */
  function fieldFor(name, prop, root, path) {
    const key = path || name;
    const s = resolveSchema(prop, root);
    const title = s.title || name;
    const def = s.default;
    const label = el("span", { text: title });
    const wrap = (control, wide) =>
      el("label", { class: "param" + (wide ? " wide" : ""), title: s.description || "" }, label, control);

    const branches = (s.anyOf || s.oneOf || []).map((b) => resolveSchema(b, root));
    if (branches.length) {
      const nonNull = branches.filter((b) => b.type !== "null");
      const nullable = nonNull.length < branches.length;
      const enumBranch = nonNull.find((b) => Array.isArray(b.enum));
      const colourBranch = nonNull.find(isColourArray);
      if (enumBranch && colourBranch && nonNull.length === 2) {
        // e.g. occlusion's baseline: "zero" | "mean" | "blur" | [r, g, b]
        const select = el("select", { name: key });
        for (const o of enumBranch.enum) select.append(el("option", { value: o, text: String(o) }));
        select.append(el("option", { value: "__custom__", text: "colour…" }));
        const colour = el("input", { type: "color", value: "#808080", "aria-label": key + " colour" });
        if (Array.isArray(def)) {
          select.value = "__custom__";
          colour.value = rgbToHex(def);
        } else if (def !== undefined) {
          select.value = def;
        }
        const sync = () => (colour.hidden = select.value !== "__custom__");
        select.addEventListener("change", sync);
        sync();
        const get = () => (select.value === "__custom__" ? hexToRgb(colour.value) : select.value);
        return { node: wrap(el("div", { class: "pair" }, select, colour)), get };
      }
      const objects = nonNull.filter((b) => b.type === "object" || b.properties);
      if (objects.length > 1 && objects.length === nonNull.length) {
        const union = objectUnionField(key, s, objects, root, label);
        if (union) return union;
      }
      if (nullable && nonNull.length === 1) {
        const merged = { ...nonNull[0], title, description: s.description, default: def };
        return fieldFor(name, merged, root, key);
      }
      return jsonField(key, s, wrap);
    }
    if (s.type === "object" && s.properties) {
      const fields = objectFields(s, root, key);
      const node = el(
        "div",
        { class: "param wide nested", title: s.description || "" },
        label,
        el("div", { class: "subform" }, ...fields.filter((f) => f.node).map((f) => f.node))
      );
      return { node, get: () => collect(fields) };
    }
    if (Array.isArray(s.enum)) {
      const { input, get } = selectInput(key, s.enum, def);
      return { node: wrap(input), get };
    }
    if (s.type === "boolean") {
      const input = el("input", { type: "checkbox", name: key });
      input.checked = Boolean(def);
      const node = el("label", { class: "param check", title: s.description || "" }, input, label);
      return { node, get: () => input.checked };
    }
    if (s.type === "integer" || s.type === "number") {
      const { input, get } = numberInput(key, s, def);
      return { node: wrap(input), get };
    }
    if (s.type === "string") {
      const isLayer = /layer/i.test(name);
      const input = el("input", {
        type: "text",
        name: key,
        value: def !== undefined && def !== null ? def : "",
        placeholder: def === null || def === undefined ? "(default)" : "",
        list: isLayer ? "layer-list" : null,
      });
      return {
        node: wrap(input, true),
        get: () => (input.value.trim() === "" ? undefined : input.value.trim()),
      };
    }
    return jsonField(key, s, wrap);
  }

  /** Fields of an object schema (``const`` properties are sent as they are). */
  function objectFields(s, root, path) {
    const fields = [];
    for (const [k, p] of Object.entries(s.properties || {})) {
      const ps = resolveSchema(p, root);
      if (ps.const !== undefined) {
        fields.push({ name: k, get: () => ps.const });
        continue;
      }
      const f = fieldFor(k, p, root, path + "." + k);
      fields.push({ name: k, get: f.get, node: f.node });
    }
    return fields;
  }

  function collect(fields) {
    const out = {};
    for (const f of fields) {
      const v = f.get();
      if (v !== undefined) out[f.name] = v;
    }
    return out;
  }

  /** A discriminated union of objects (e.g. segmentation: slic | quickshift | grid ...):
   * a select of the tag, and the chosen variant's own fields. */
  function objectUnionField(key, s, objects, root, label) {
    let tagName = s.discriminator && s.discriminator.propertyName;
    if (!tagName) {
      const first = Object.keys(objects[0].properties || {});
      tagName = first.find((k) =>
        objects.every((o) => o.properties && o.properties[k] && o.properties[k].const !== undefined)
      );
    }
    if (!tagName) return null;
    const variants = objects.map((o) => {
      const tag = resolveSchema(o.properties[tagName], root).const;
      const fields = objectFields(o, root, key);
      const nodes = fields.filter((f) => f.node).map((f) => f.node);
      return { tag, fields, panel: el("div", { class: "subform" }, ...nodes) };
    });
    const select = el("select", { name: key + "." + tagName });
    const def = s.default;
    if (!def) select.append(el("option", { value: "", text: "default" }));
    for (const v of variants) select.append(el("option", { value: v.tag, text: String(v.tag) }));
    if (def && def[tagName] !== undefined) select.value = def[tagName];
    const sync = () => {
      for (const v of variants) v.panel.hidden = v.tag !== select.value;
    };
    select.addEventListener("change", sync);
    sync();
    const get = () => {
      const v = variants.find((x) => x.tag === select.value);
      return v ? collect(v.fields) : undefined;
    };
    const node = el(
      "div",
      { class: "param wide nested", title: s.description || "" },
      label,
      select,
      ...variants.map((v) => v.panel)
    );
    return { node, get };
  }

  function jsonField(name, s, wrap) {
    const input = el("input", {
      type: "text",
      name,
      value: s.default !== undefined ? JSON.stringify(s.default) : "",
      placeholder: "JSON",
    });
    const get = () => {
      const raw = input.value.trim();
      if (raw === "") return undefined;
      try {
        return JSON.parse(raw);
      } catch (e) {
        return raw;
      }
    };
    return { node: wrap(input, true), get };
  }

  function renderParams(schema) {
    const form = $("params");
    const props = schema.properties || {};
    state.paramFields = [];
    const nodes = [];
    for (const [name, prop] of Object.entries(props)) {
      const field = fieldFor(name, prop, schema);
      state.paramFields.push({ name, get: field.get });
      nodes.push(field.node);
    }
    form.replaceChildren(...nodes, el("datalist", { id: "layer-list" }));
    refreshLayerLists();
  }

  function refreshLayerLists() {
    const list = $("layer-list");
    const m = currentModel();
    if (!list || !m) return;
    list.replaceChildren(
      ...(m.layers || []).filter((l) => l.spatial).map((l) => el("option", { value: l.name }))
    );
  }

  function collectParams() {
    return collect(state.paramFields);
  }

  // ---------------------------------------------------------------- target

  function onTargetKind() {
    const kind = $("target-kind").value;
    $("target-index").hidden = kind !== "index";
    $("target-label").hidden = kind !== "label";
    markSelectedPrediction();
  }

  function targetValue() {
    const kind = $("target-kind").value;
    if (kind === "index") {
      const v = $("target-index").value.trim();
      if (!/^\d+$/.test(v)) throw new ApiError(0, "invalid_target", "Enter a class index (0, 1, 2, …).");
      return v;
    }
    if (kind === "label") {
      const v = $("target-label").value.trim();
      if (!v) throw new ApiError(0, "invalid_target", "Enter a label of the model.");
      return v;
    }
    return "top1";
  }

  // ---------------------------------------------------------------- explanations and jobs

  async function run() {
    clearError();
    const m = currentModel();
    const method = currentMethod();
    if (!state.image || !m || !method) return;
    const form = new FormData();
    form.append("file", state.image.blob, state.image.name);
    form.append("model", m.name);
    form.append("method", method.name);
    form.append("target", targetValue());
    const params = collectParams();
    form.append("params", JSON.stringify(params));
    form.append("outputs", JSON.stringify([]));
    const metrics = Array.from(document.querySelectorAll("#metrics input:checked")).map(
      (i) => i.value,
    );
    if (metrics.length) form.append("metrics", JSON.stringify(metrics));
    const token = ++state.pollToken;
    resetResult();
    $("run").disabled = true;
    try {
      const response = await api("/v1/explanations", { method: "POST", body: form });
      const body = await response.json();
      if (token !== state.pollToken) return;
      if (response.status === 200) {
        // already computed (same request): the result itself
        showJob({ id: body.job, state: "succeeded", progress: 1 });
        await showResult(body.job, {
          target: body.target,
          timings: body.timings,
          extras: body.extras,
          metrics: body.metrics,
          shape: body.attribution.shape,
          model_calls: body.model_calls,
          method: body.method,
          params: body.params,
          cached: true,
        });
      } else {
        await follow(body, token, params);
      }
    } finally {
      if (token === state.pollToken) updateRunButton();
    }
  }

  function showJob(st) {
    state.job = st.id;
    $("job").hidden = false;
    const s = $("job-state");
    s.textContent = st.state;
    s.dataset.state = st.state;
    const pct = Math.round((st.state === "succeeded" ? 1 : st.progress) * 100);
    $("job-bar").style.width = pct + "%";
    $("job-bar").parentElement.setAttribute("aria-valuenow", String(pct));
    $("job-percent").textContent = pct + "%";
    $("cancel").disabled = ["succeeded", "failed", "cancelled"].includes(st.state);
  }

  async function follow(st, token, params) {
    $("run").disabled = true;
    for (;;) {
      if (token !== state.pollToken) return;
      showJob(st);
      if (st.state === "succeeded") {
        const summary = st.result_summary || {};
        await showResult(st.id, {
          target: summary.target,
          timings: summary.timings || st.timings,
          extras: summary.extras || {},
          metrics: summary.metrics || {},
          shape: summary.shape,
          model_calls: st.model_calls,
          method: st.method,
          params,
          cached: false,
        });
        return;
      }
      if (st.state === "failed") {
        const err = st.error || { code: "job_failed", message: "The job failed." };
        showError(new ApiError(422, err.code, err.message, err.details));
        return;
      }
      if (st.state === "cancelled") return;
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (token !== state.pollToken) return;
      st = await apiJson(`/v1/jobs/${encodeURIComponent(st.id)}`);
    }
  }

  async function cancel() {
    if (!state.job) return;
    clearError();
    const st = await apiJson(`/v1/jobs/${encodeURIComponent(state.job)}`, { method: "DELETE" });
    state.pollToken++;
    showJob(st);
    updateRunButton();
  }

  function resultUrl(job, query) {
    return `/v1/jobs/${encodeURIComponent(job)}/result?` + new URLSearchParams(query).toString();
  }

  function resetResult() {
    state.result = null;
    state.heat = null;
    $("downloads").hidden = true;
    $("summary-section").hidden = true;
    $("extras-section").hidden = true;
    draw();
  }

  async function showResult(job, summary) {
    state.result = { job, summary };
    renderSummary(summary, job);
    renderExtras(Object.assign({}, summary.extras || {}, { metrics: summary.metrics || {} }));
    updateDownloads();
    $("downloads").hidden = false;
    await loadHeat();
  }

  /** The heatmap at the image's size: the overlay with alpha=1 (resized like the server's). */
  async function loadHeat() {
    if (!state.result) return;
    const cmap = $("colormap").value;
    const job = state.result.job;
    const key = job + "|" + cmap;
    if (state.heat && state.heat.key === key) return draw();
    const token = ++state.heatToken;
    const r = await api(resultUrl(job, { format: "overlay", colormap: cmap, alpha: "1" }));
    const url = URL.createObjectURL(await r.blob());
    try {
      const img = await loadImage(url);
      if (token !== state.heatToken || !state.result || state.result.job !== job) return;
      state.heat = { key, img, job, cmap };
    } finally {
      URL.revokeObjectURL(url);
    }
    draw();
  }

  function draw() {
    const canvas = $("canvas");
    const img = state.image && state.image.img;
    $("placeholder").hidden = Boolean(img);
    if (!img) {
      canvas.dataset.state = "empty";
      return;
    }
    const w = img.naturalWidth;
    const h = img.naturalHeight;
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    ctx.globalAlpha = 1;
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(img, 0, 0, w, h);
    const heat = state.heat;
    if (heat && state.result && heat.job === state.result.job) {
      ctx.globalAlpha = Number($("opacity").value);
      ctx.drawImage(heat.img, 0, 0, w, h);
      ctx.globalAlpha = 1;
      canvas.dataset.state = "overlay";
      canvas.dataset.job = heat.job;
      canvas.dataset.colormap = heat.cmap;
    } else {
      canvas.dataset.state = "image";
      delete canvas.dataset.job;
    }
    canvas.dataset.opacity = $("opacity").value;
  }

  function updateDownloads() {
    if (!state.result) return;
    const job = state.result.job;
    const cmap = $("colormap").value;
    const alpha = $("opacity").value;
    const short = job.slice(0, 12);
    const set = (id, query, name) => {
      $(id).href = resultUrl(job, query);
      $(id).download = name;
    };
    set("dl-png", { format: "png", colormap: cmap }, `lantern-${short}-${cmap}.png`);
    set("dl-overlay", { format: "overlay", colormap: cmap, alpha }, `lantern-${short}-overlay.png`);
    set("dl-json", { format: "json" }, `lantern-${short}.json`);
    set("dl-npy", { format: "npy" }, `lantern-${short}.npy`);
  }

  function kvRows(tbody, rows) {
    tbody.replaceChildren(
      ...rows.map(([k, v, cls]) =>
        el("tr", {}, el("td", { text: k }), el("td", { class: cls || "" }, v))
      )
    );
  }

  function renderSummary(s, job) {
    const rows = [];
    if (s.target) {
      rows.push(["target", `${s.target.label} (#${s.target.index})`]);
      rows.push(["score", fmtNumber(s.target.score), "num"]);
    }
    if (s.method) rows.push(["method", s.method]);
    if (s.params && Object.keys(s.params).length) {
      const text = Object.entries(s.params)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(", ");
      rows.push(["params", el("code", { class: "params-text", text })]);
    }
    if (s.shape) rows.push(["attribution", s.shape.join(" × ")]);
    if (s.model_calls !== undefined && s.model_calls !== null) {
      rows.push(["model calls", String(s.model_calls), "num"]);
    }
    if (s.timings && s.timings.compute_ms !== undefined) {
      rows.push(["compute", fmtNumber(s.timings.compute_ms) + " ms", "num"]);
    }
    if (s.cached) rows.push(["answer", "cached result"]);
    rows.push(["job", el("code", { text: job.slice(0, 16) + "…", title: job })]);
    kvRows($("summary").tBodies[0], rows);
    $("summary-section").hidden = false;
  }

  function numericEntries(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? prefix + "." + k : k;
      if (typeof v === "number") out.push([key, fmtNumber(v), "num"]);
      else if (v && typeof v === "object" && !Array.isArray(v)) numericEntries(v, key, out);
    }
    return out;
  }

  function renderExtras(extras) {
    const rows = numericEntries(extras, "", []);
    kvRows($("extras").tBodies[0], rows);
    $("extras-section").hidden = rows.length === 0;
  }

  // ---------------------------------------------------------------- display controls

  function onOpacity() {
    $("opacity-value").textContent = Math.round(Number($("opacity").value) * 100) + "%";
    draw();
    updateDownloads();
  }

  function onColormap() {
    const cmap = $("colormap").value;
    $("colorbar").dataset.cmap = cmap;
    const signed = cmap === "coolwarm";
    $("legend-low").textContent = signed ? "−max" : "0";
    $("legend-high").textContent = signed ? "+max" : "max";
    updateDownloads();
    return loadHeat();
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $("error-close").addEventListener("click", clearError);
    $("model").addEventListener("change", onModelChange);
    $("model-upload").addEventListener("click", guarded(uploadModel));
    $("image-file").addEventListener(
      "change",
      guarded(async (ev) => {
        const file = ev.target.files[0];
        if (file) await setImage(file, file.name);
      })
    );
    $("sample").addEventListener("click", guarded(useSample));
    $("method").addEventListener("change", onMethodChange);
    $("target-kind").addEventListener("change", onTargetKind);
    $("target-index").addEventListener("input", markSelectedPrediction);
    $("run").addEventListener("click", guarded(run));
    $("cancel").addEventListener("click", guarded(cancel));
    $("opacity").addEventListener("input", onOpacity);
    $("colormap").addEventListener("change", guarded(onColormap));
    onOpacity();
    onColormap();
    onTargetKind();
    guarded(async () => {
      await Promise.all([loadModels(), loadMethods()]);
      document.body.dataset.ready = "1";
    })();
  }

  init();
})();
