/* Lantern web viewer: plain JavaScript against the public v1 API (no build step).
 *
 * A result is drawn artifact by artifact: result.artifacts lists what the job produced
 * ({name, type, shape, axes, meta, links}) and RENDERERS[type] draws one card for each
 * (attribution, image, segments, curve, table; anything else gets a generic card with its
 * download links). A new kind of picture is a new renderer: add it to RENDERERS, or from
 * outside with window.Lantern.registerRenderer(type, fn). Results from a server without
 * artifacts are read as one "attribution" artifact (the job's result links).
 *
 * The current answer can be pinned: it stays on the left while the next one (another
 * method or target on the same image) is drawn beside it.
 *
 * "Explain" is the objective: the class target (the default), or another kind among those
 * the method lists (GET /v1/methods `objectives`: channel, neuron, layer_norm, direction),
 * on a layer picked from GET /v1/models/{model} `layers`; it is sent as `objective`.
 * A method whose `inputs` is "none" (feature visualisation) runs without an image (a JSON
 * body with no input) and its artifacts are drawn with no overlay. While a job runs, the
 * artifacts it has published so far (GET /v1/jobs/{id} `preview`) are drawn in the current
 * pane by the same renderers, and replaced by the result's when it succeeds.
 */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 250;
  /** Methods whose `layer` must be a spatial (N, C, H, W) layer. */
  const SPATIAL_LAYER_METHODS = new Set(["grad_cam", "grad_cam_plus_plus", "activation_maps"]);

  const state = {
    models: [], // ModelInfo[]
    methods: [], // MethodInfo[]
    paramFields: [], // {name, get(): value | undefined}
    layerFields: [], // layer pick lists of the params form: {select, def, spatialOnly}
    layers: {}, // "model@version" -> {layers: LayerInfo[], defaultLayer}
    image: null, // {blob, name, img: HTMLImageElement, url}
    job: null, // id of the job being followed or shown
    pollToken: 0,
    predictToken: 0,
    current: null, // the pane of the latest answer (see makePane)
    request: null, // what the running request asked: {method, objective, noInput}
    editor: null, // the input editor of a non-image model: {node, value()}
    previewSeq: 0, // previews drawn so far (each gets its own URLs: no stale images)
    pinned: null, // the pinned pane, or null
    display: { opacity: 0.5, colormap: "jet" },
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
    if (a !== 0 && (a < 1e-3 || a >= 1e7)) return x.toExponential(3);
    if (a >= 1e3) return String(Math.round(x)); // toPrecision(4) would write 1.002e+4
    return x.toPrecision(4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }

  /** A duration for people: "0.4 ms", "12 ms", "840 ms", "10.0 s", "1 min 40 s", "2 h 5 min". */
  function fmtDuration(ms) {
    if (typeof ms !== "number" || !isFinite(ms) || ms < 0) return "—";
    if (ms < 9.95) return ms.toFixed(1).replace(/\.0$/, "") + " ms";
    if (Math.round(ms) < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (Math.round(s * 10) / 10 < 60) return s.toFixed(1) + " s";
    let total = Math.round(s);
    if (total < 3600) {
      const min = Math.floor(total / 60);
      const sec = total % 60;
      return sec ? `${min} min ${sec} s` : `${min} min`;
    }
    total = Math.round(s / 60);
    const h = Math.floor(total / 60);
    const min = total % 60;
    return min ? `${h} h ${min} min` : `${h} h`;
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

  /** Whether a method explains an input (its `inputs` is "item"; older servers: always). */
  function takesInput(method) {
    return !method || !method.inputs || method.inputs === "item";
  }

  // ---- inputs of other modalities: an editor per modality, registered by a file of
  //      static/renderers/ with window.Lantern.registerInputEditor(modality, factory);
  //      factory(model) -> {node, title?, value(): the request's `input` body or null}

  const INPUT_EDITORS = {};

  function modalityOf(m) {
    return (m && m.manifest && m.manifest.modality) || "image";
  }

  /** The editor of the current model's modality (null for images: the image panel). */
  function mountInputEditor(m) {
    const modality = modalityOf(m);
    const section = $("input-editor-section");
    state.editor = null;
    $("input-editor").replaceChildren();
    if (modality === "image") {
      section.hidden = true;
      $("image-section").hidden = false;
      return;
    }
    $("image-section").hidden = true;
    section.hidden = false;
    const factory = INPUT_EDITORS[modality];
    if (!factory) {
      $("input-editor-title").textContent = "Input";
      $("input-editor").append(
        el("p", { class: "hint", text: `The viewer has no editor for ${modality} inputs.` }),
      );
      return;
    }
    state.editor = factory(m, updateRunButton);
    $("input-editor-title").textContent = state.editor.title || "Input";
    $("input-editor").append(state.editor.node);
  }

  function hasInput() {
    if (modalityOf(currentModel()) === "image") return Boolean(state.image);
    return Boolean(state.editor && state.editor.value());
  }

  function updateRunButton() {
    const method = currentMethod();
    $("run").disabled = !(currentModel() && method && (hasInput() || !takesInput(method))) ||
      Boolean(method && method.inputs === "dataset");
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
    mountInputEditor(m);
    if (state.allMethods && modalityOf(m) !== state.methodsModality) listMethods();
    const shape =
      modalityOf(m) === "image"
        ? `${m.manifest.input_size[0]}×${m.manifest.input_size[1]} ${m.manifest.layout}`
        : modalityOf(m);
    $("model-info").textContent =
      `${shape} · ${m.manifest.labels.length} labels · ` +
      `${fmtBytes(m.size_bytes)} · version ${m.version.slice(0, 10)}`;
    const labels = $("labels");
    labels.replaceChildren(...m.manifest.labels.map((l) => el("option", { value: l })));
    $("target-index").max = String(m.manifest.labels.length - 1);
    refreshLayerLists();
    guarded(loadLayers)(m);
    updateRunButton();
    if (modalityOf(m) === "image") predict();
  }

  function layerKey(m) {
    return m.name + "@" + m.version;
  }

  /** The model's layers (GET /v1/models/{model}), once per model version. */
  async function loadLayers(m) {
    const key = layerKey(m);
    if (!state.layers[key]) {
      const info = await apiJson(`/v1/models/${encodeURIComponent(m.name)}`);
      state.layers[key] = {
        layers: info.layers || [],
        defaultLayer: (info.capabilities && info.capabilities.default_layer) || null,
      };
    }
    const now = currentModel();
    if (now && layerKey(now) === key) refreshLayerLists();
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
    clearComparison();
    resetResult();
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
    const kind = $("objective-kind");
    if (kind.value !== "class" && Array.from(kind.options).some((o) => o.value === "class")) {
      kind.value = "class";
      onObjectiveKind();
    }
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
    state.allMethods = body.methods;
    listMethods();
  }

  /** The methods that take the current model's modality (one name may have a spec per
   *  modality: the list holds the one for this model's). */
  function listMethods() {
    const modalities = (m) => (Array.isArray(m.modalities) && m.modalities.length ? m.modalities : [m.modality]);
    const modality = modalityOf(currentModel());
    state.methodsModality = modality;
    const previous = $("method").value;
    state.methods = (state.allMethods || []).filter((m) => modalities(m).includes(modality));
    $("method").replaceChildren(
      ...state.methods.map((m) =>
        el("option", {
          value: m.name,
          text: `${m.name} (${m.kind})` + (takesInput(m) ? "" : " · no input"),
          "data-inputs": m.inputs || "item",
        })
      )
    );
    if (previous && state.methods.some((m) => m.name === previous)) $("method").value = previous;
    else {
      // the Explain page starts on a method that explains the input (dataset analyses,
      // first by name, run from the datasets page)
      const first = state.methods.find((m) => m.inputs !== "dataset");
      if (first) $("method").value = first.name;
    }
    onMethodChange();
  }

  function onMethodChange() {
    const m = currentMethod();
    $("method-info").textContent = m ? m.description : "";
    const note = $("method-inputs");
    note.hidden = takesInput(m);
    note.textContent = takesInput(m)
      ? ""
      : m.inputs === "none"
        ? "Takes no input: no image is sent; it works from the objective alone."
        : `Takes a ${m.inputs}, not one image.`;
    if (m && m.inputs === "dataset") {
      // a dataset analysis runs on the datasets page, which picks the dataset
      note.replaceChildren(
        "Takes a dataset, not one image: run it on the ",
        el("a", { href: "#datasets", id: "to-datasets", text: "Datasets page" }),
        "."
      );
    }
    renderParams(m ? m.params_schema : { properties: {} });
    refreshObjectiveKinds();
    if (state.current && !state.current.result && !state.current.preview) drawPreview();
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
      const autoBranch = nonNull.find(
        (b) => b.const === "auto" || (Array.isArray(b.enum) && b.enum.length === 1 && b.enum[0] === "auto")
      );
      const countBranch = nonNull.find((b) => b.type === "integer" || b.type === "number");
      if (autoBranch && countBranch && nonNull.length === 2) {
        // e.g. LIME's num_samples: a count, or "auto" (rounds until the answer converges)
        const number = numberInput(key, countBranch, def === "auto" ? undefined : def);
        const auto = el("input", { type: "checkbox", name: key + ".auto", "aria-label": key + " auto" });
        auto.checked = def === "auto";
        const sync = () => (number.input.disabled = auto.checked);
        auto.addEventListener("change", sync);
        sync();
        const pair = el("div", { class: "pair" }, number.input, el("label", { class: "check" }, auto, "auto"));
        return { node: wrap(pair), get: () => (auto.checked ? "auto" : number.get()) };
      }
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
        const merged = {
          ...nonNull[0],
          title,
          description: s.description,
          default: def,
          nullable: true,
        };
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
    if (s.type === "string" && /layer/i.test(name)) {
      return layerField(key, s, wrap);
    }
    if (s.type === "string") {
      const input = el("input", {
        type: "text",
        name: key,
        value: def !== undefined && def !== null ? def : "",
        placeholder: def === null || def === undefined ? "(default)" : "",
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
      value: s.default !== undefined && s.default !== null ? JSON.stringify(s.default) : "",
      placeholder: s.default === null ? "(default)" : "JSON",
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

  /** Whose model and method a params form being built is for: the Explain page's, or
   *  (paramsForm) another page's. */
  let formFor = { model: () => currentModel(), method: () => currentMethod() };

  /** A pick list of the model's layers; "(default)" sends null (the method's default). */
  function layerField(key, s, wrap) {
    const method = formFor.method();
    const spatialOnly =
      Boolean(method && SPATIAL_LAYER_METHODS.has(method.name)) ||
      /spatial/i.test(s.description || "");
    const select = el("select", { name: key, "data-layers": "pending" });
    const field = { select, def: s.default, spatialOnly, model: formFor.model };
    state.layerFields.push(field);
    fillLayerSelect(field);
    const get = () => {
      if (select.value !== "") return select.value;
      return s.nullable || s.default === null ? null : undefined;
    };
    return { node: wrap(select, true), get };
  }

  function layerText(l) {
    const dims = (l.shape || []).slice(1).join("×");
    return `${l.name} · ${l.op_type}${dims ? " · " + dims : ""}`;
  }

  function fillLayerSelect(field) {
    const { select, def, spatialOnly } = field;
    const m = (field.model || currentModel)();
    const info = m ? state.layers[layerKey(m)] : null;
    const previous = select.value || (typeof def === "string" ? def : "");
    const layers = info ? info.layers.filter((l) => !spatialOnly || l.spatial) : [];
    const fallback = info && info.defaultLayer ? `(default: ${info.defaultLayer})` : "(default)";
    const options = [el("option", { value: "", text: fallback })];
    for (const l of layers) options.push(el("option", { value: l.name, text: layerText(l) }));
    select.replaceChildren(...options);
    select.value = layers.some((l) => l.name === previous) ? previous : "";
    select.dataset.layers = info ? String(layers.length) : "pending";
    select.title = spatialOnly
      ? "Spatial layers (N, C, H, W) of the model; (default) lets the method choose."
      : "Layers of the model; (default) lets the method choose.";
  }

  function renderParams(schema) {
    const form = $("params");
    const props = schema.properties || {};
    state.paramFields = [];
    state.layerFields = [];
    const nodes = [];
    for (const [name, prop] of Object.entries(props)) {
      const field = fieldFor(name, prop, schema);
      state.paramFields.push({ name, get: field.get });
      nodes.push(field.node);
    }
    form.replaceChildren(...nodes);
  }

  /** A params form from a JSON schema for another page (the datasets page): fills ``form``
   *  and returns {get(): params, refreshLayers()}; its layer lists follow ``opts.model()``
   *  (loaded with layersOf). The Explain page's form is left as it is. */
  function paramsForm(schema, form, opts) {
    const saved = [formFor, state.layerFields];
    formFor = {
      model: (opts && opts.model) || (() => null),
      method: (opts && opts.method) || (() => null),
    };
    state.layerFields = [];
    const fields = [];
    const nodes = [];
    try {
      const props = (schema && schema.properties) || {};
      for (const [name, prop] of Object.entries(props)) {
        const field = fieldFor(name, prop, schema);
        fields.push({ name, get: field.get });
        nodes.push(field.node);
      }
    } finally {
      const own = state.layerFields;
      [formFor, state.layerFields] = saved;
      fields.layerFields = own;
    }
    form.replaceChildren(...nodes);
    const layerFields = fields.layerFields;
    return {
      get: () => collect(fields),
      refreshLayers: () => layerFields.forEach(fillLayerSelect),
    };
  }

  /** A model's layers (GET /v1/models/{model}), once per model version:
   *  {layers: LayerInfo[], defaultLayer}. */
  async function layersOf(m) {
    const key = layerKey(m);
    if (!state.layers[key]) await loadLayers(m);
    return state.layers[key];
  }

  function refreshLayerLists() {
    for (const f of state.layerFields) fillLayerSelect(f);
    fillObjectiveLayers();
  }

  function collectParams() {
    return collect(state.paramFields);
  }

  // ---------------------------------------------------------------- objective ("Explain")

  /** The objective kinds the viewer can build, in the order of the pick list. */
  const OBJECTIVE_KINDS = {
    class: "Class score",
    channel: "Channel of a layer",
    neuron: "Neuron (one position of a channel)",
    layer_norm: "Layer norm (mean squared activation)",
    direction: "Direction in a layer's channels",
  };

  /** The kinds a method takes (GET /v1/methods `objectives`; older servers: class only). */
  function methodKinds(method) {
    const listed = method && Array.isArray(method.objectives) && method.objectives.length
      ? method.objectives
      : ["class"];
    return Object.keys(OBJECTIVE_KINDS).filter((k) => listed.includes(k));
  }

  function refreshObjectiveKinds() {
    const method = currentMethod();
    const sel = $("objective-kind");
    const previous = sel.value;
    const kinds = methodKinds(method);
    sel.replaceChildren(...kinds.map((k) => el("option", { value: k, text: OBJECTIVE_KINDS[k] })));
    sel.value = kinds.includes(previous) ? previous : kinds[0] || "";
    sel.disabled = kinds.length < 2;
    sel.title = method
      ? `${method.name} takes: ${kinds.join(", ")}`
      : "";
    // without an input there is no prediction for "top1" to name
    const noInput = !takesInput(method);
    const top1 = $("target-kind").querySelector("option[value=top1]");
    top1.disabled = noInput;
    top1.title = noInput ? "This method takes no input: there is no prediction to name." : "";
    if (noInput && $("target-kind").value === "top1") {
      $("target-kind").value = "index";
      onTargetKind();
    }
    onObjectiveKind();
  }

  function onObjectiveKind() {
    const kind = $("objective-kind").value || "class";
    $("class-target").hidden = kind !== "class";
    $("objective-fields").hidden = kind === "class";
    $("objective-channel-field").hidden = !["channel", "neuron"].includes(kind);
    $("objective-y-field").hidden = kind !== "neuron";
    $("objective-x-field").hidden = kind !== "neuron";
    $("objective-vector-field").hidden = kind !== "direction";
    const method = currentMethod();
    const what = {
      class: takesInput(method) ? "explains a class score." : "maximises a class score.",
      channel: "the mean of one channel over its positions.",
      neuron: "one channel at one position of a spatial layer (default: the centre).",
      layer_norm: "the mean squared activation of the layer.",
      direction: "the dot product with a vector in the layer's channel space.",
    }[kind];
    $("objective-info").textContent = method && what
      ? kind === "class"
        ? `${method.name} ${what}`
        : `${method.name} ${takesInput(method) ? "explains" : "maximises"} ${what}`
      : "";
    fillObjectiveLayers();
    updateMetricsAvailability();
  }

  /** Channels and positions of a layer: {channels, h, w} (null where not known). */
  function layerGeometry(l) {
    const dims = Array.isArray(l && l.shape) ? l.shape : [];
    const known = (d) => (Number.isInteger(d) && d > 0 ? d : null);
    const m = currentModel();
    const nhwc = m && m.manifest && m.manifest.layout === "NHWC" && dims.length > 2;
    const channels = known(dims[nhwc ? dims.length - 1 : 1]);
    const spatial = dims.length === 4;
    return {
      channels,
      h: spatial ? known(dims[nhwc ? 1 : 2]) : null,
      w: spatial ? known(dims[nhwc ? 2 : 3]) : null,
      spatial: Boolean(l && l.spatial) && spatial,
    };
  }

  function objectiveLayers() {
    const m = currentModel();
    const info = m ? state.layers[layerKey(m)] : null;
    if (!info) return null;
    const kind = $("objective-kind").value;
    return info.layers.filter((l) => kind !== "neuron" || layerGeometry(l).spatial);
  }

  function fillObjectiveLayers() {
    const select = $("objective-layer");
    const layers = objectiveLayers();
    const previous = select.value;
    if (!layers) {
      select.replaceChildren(el("option", { value: "", text: "(loading the model's layers…)" }));
      select.dataset.layers = "pending";
      updateObjectiveLayerInfo();
      return;
    }
    const m = currentModel();
    const info = state.layers[layerKey(m)];
    select.replaceChildren(
      ...(layers.length ? [] : [el("option", { value: "", text: "(no layers listed)" })]),
      ...layers.map((l) => el("option", { value: l.name, text: layerText(l) }))
    );
    const names = layers.map((l) => l.name);
    select.value = names.includes(previous)
      ? previous
      : names.includes(info.defaultLayer)
        ? info.defaultLayer
        : names[names.length - 1] || "";
    select.dataset.layers = String(layers.length);
    select.title = $("objective-kind").value === "neuron"
      ? "Spatial layers (N, C, H, W) of the model, with their shapes"
      : "Layers of the model, with their shapes (channels × height × width)";
    updateObjectiveLayerInfo();
  }

  function currentObjectiveLayer() {
    const m = currentModel();
    const info = m ? state.layers[layerKey(m)] : null;
    const name = $("objective-layer").value;
    return (info && info.layers.find((l) => l.name === name)) || null;
  }

  /** The chosen layer's channel range (and positions): the inputs' limits and the hint. */
  function updateObjectiveLayerInfo() {
    const l = currentObjectiveLayer();
    const g = layerGeometry(l);
    const parts = [];
    if (l && g.channels) parts.push(`${g.channels} channels (0–${g.channels - 1})`);
    if (l && g.h && g.w) parts.push(`${g.h}×${g.w} positions (y 0–${g.h - 1}, x 0–${g.w - 1})`);
    $("objective-layer-info").textContent = l ? `${l.name}: ${parts.join(" · ") || "shape unknown"}` : "";
    const setMax = (id, n) => {
      if (n) $(id).max = String(n - 1);
      else $(id).removeAttribute("max");
    };
    setMax("objective-channel", g.channels);
    setMax("objective-y", g.h);
    setMax("objective-x", g.w);
    $("objective-vector").placeholder = g.channels
      ? `${g.channels} numbers, comma-separated`
      : "comma-separated numbers";
  }

  function updateMetricsAvailability() {
    const method = currentMethod();
    const kind = $("objective-kind").value || "class";
    let why = "";
    if (!takesInput(method)) why = "Quality scores need an input: this method takes none.";
    else if (kind !== "class") why = "Quality scores score a class: pick the class objective.";
    for (const input of document.querySelectorAll("#metrics input")) {
      input.disabled = Boolean(why);
      input.title = why;
    }
    $("metrics-info").textContent = why;
    $("metrics-info").hidden = !why;
  }

  // ---------------------------------------------------------------- target

  function onTargetKind() {
    const kind = $("target-kind").value;
    $("target-index").hidden = kind !== "index";
    $("target-label").hidden = kind !== "label";
    markSelectedPrediction();
  }

  /** The class target: a class index (a number), a label, or "top1". */
  function targetValue() {
    const kind = $("target-kind").value;
    if (kind === "index") {
      const v = $("target-index").value.trim();
      if (!/^\d+$/.test(v)) throw new ApiError(0, "invalid_target", "Enter a class index (0, 1, 2, …).");
      return Number(v);
    }
    if (kind === "label") {
      const v = $("target-label").value.trim();
      if (!v) throw new ApiError(0, "invalid_target", "Enter a label of the model.");
      return v;
    }
    return "top1";
  }

  function intField(id, what, required) {
    const raw = $(id).value.trim();
    if (raw === "") {
      if (required) throw new ApiError(0, "invalid_objective", `Enter the ${what}.`);
      return undefined;
    }
    if (!/^\d+$/.test(raw)) {
      throw new ApiError(0, "invalid_objective", `The ${what} is a whole number (0, 1, 2, …), not ${raw}.`);
    }
    return Number(raw);
  }

  function parseVector(raw) {
    const parts = raw.split(/[\s,;]+/).filter((t) => t !== "");
    if (!parts.length) {
      throw new ApiError(0, "invalid_objective", "Enter the direction: numbers separated by commas.");
    }
    return parts.map((t, i) => {
      const v = Number(t);
      if (!isFinite(v)) {
        throw new ApiError(0, "invalid_objective", `Component ${i} of the direction is not a number: ${t}.`);
      }
      return v;
    });
  }

  /** What the request asks for: {target} (the class shorthand) or {objective}. */
  function explainValue() {
    const kind = $("objective-kind").value || "class";
    if (kind === "class") {
      const target = targetValue();
      const score = $("objective-score").value;
      return score ? { objective: { kind: "class", target, score } } : { target };
    }
    const layer = $("objective-layer").value;
    if (!layer) throw new ApiError(0, "invalid_objective", "Pick a layer for the objective.");
    const o = { kind, layer };
    if (kind === "channel" || kind === "neuron") o.channel = intField("objective-channel", "channel", true);
    if (kind === "neuron") {
      const y = intField("objective-y", "neuron's y", false);
      const x = intField("objective-x", "neuron's x", false);
      if (y !== undefined) o.y = y;
      if (x !== undefined) o.x = x;
    }
    if (kind === "direction") o.vector = parseVector($("objective-vector").value);
    return { objective: o };
  }

  // ---------------------------------------------------------------- explanations and jobs

  async function run() {
    clearError();
    const m = currentModel();
    const method = currentMethod();
    const withInput = takesInput(method);
    if (!m || !method || (withInput && !hasInput())) return;
    const imageInput = withInput && modalityOf(m) === "image";
    const ask = explainValue();
    const params = collectParams();
    const metrics = Array.from(document.querySelectorAll("#metrics input:checked:not(:disabled)")).map(
      (i) => i.value,
    );
    let options;
    if (imageInput) {
      const form = new FormData();
      form.append("file", state.image.blob, state.image.name);
      form.append("model", m.name);
      form.append("method", method.name);
      if (ask.objective) form.append("objective", JSON.stringify(ask.objective));
      else form.append("target", String(ask.target));
      form.append("params", JSON.stringify(params));
      form.append("outputs", JSON.stringify([]));
      if (metrics.length) form.append("metrics", JSON.stringify(metrics));
      options = { method: "POST", body: form };
    } else {
      // no input, or one of another modality (its editor's `input` body): a JSON body
      const body = { model: m.name, method: method.name, params, outputs: [], ...ask };
      if (withInput) body.input = state.editor.value();
      options = {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      };
    }
    const token = ++state.pollToken;
    state.request = {
      method: method.name,
      objective: ask.objective || { kind: "class", target: ask.target },
      noInput: !imageInput,
    };
    resetResult();
    $("run").disabled = true;
    // sync methods answer inline (the API runs them at once); jobs are followed by polling
    const inline = method.execution === "sync";
    if (inline) showJob({ id: null, state: "running", progress: 0 });
    try {
      let response;
      try {
        response = await api("/v1/explanations" + (inline ? "?wait=30" : ""), options);
      } catch (e) {
        if (inline && token === state.pollToken) showJob({ id: null, state: "failed", progress: 0 });
        throw e;
      }
      const body = await response.json();
      if (token !== state.pollToken) return;
      if (response.status === 200) {
        // the result itself: computed inline, or already computed (the same request)
        showJob({ id: body.job, state: "succeeded", progress: 1 });
        showResult(readResult(body, { cached: !inline, noInput: !imageInput }));
      } else {
        await follow(body, token);
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
    $("cancel").disabled = !st.id || ["succeeded", "failed", "cancelled"].includes(st.state);
  }

  async function follow(st, token) {
    $("run").disabled = true;
    const noInput = Boolean(state.request && state.request.noInput);
    for (;;) {
      if (token !== state.pollToken) return;
      showJob(st);
      if (st.state === "succeeded") {
        // the result itself: every field, and its artifacts where the server lists them
        const body = await apiJson(resultUrl(st.id, { format: "json" }));
        if (token !== state.pollToken) return;
        showResult(readResult(body, { cached: false, noInput }));
        return;
      }
      if (st.state === "failed") {
        const err = st.error || { code: "job_failed", message: "The job failed." };
        markPreviewEnded("failed");
        showError(new ApiError(422, err.code, err.message, err.details));
        return;
      }
      if (st.state === "cancelled") {
        markPreviewEnded("cancelled");
        return;
      }
      if (Array.isArray(st.preview) && st.preview.length) showPreview(st);
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (token !== state.pollToken) return;
      st = await apiJson(`/v1/jobs/${encodeURIComponent(st.id)}`);
    }
  }

  /** What a running job has published so far, drawn in the current pane (once per change). */
  function showPreview(st) {
    const pane = state.current;
    const signature = JSON.stringify(
      st.preview.map((a) => [a && a.name, a && a.type, a && a.shape, a && a.meta, a && a.links])
    );
    if (pane.previewSignature === signature && pane.preview && pane.preview.job === st.id) return;
    pane.previewSignature = signature;
    const seq = ++state.previewSeq;
    // the same names (and links) are republished: each preview gets its own URLs, so that
    // neither the browser nor the JSON cache shows an older one
    const artifacts = st.preview
      .filter((a) => a && typeof a === "object")
      .map((a) => {
        const links = {};
        for (const [k, v] of Object.entries(a.links || {})) {
          if (typeof v === "string") links[k] = withQuery(v, { preview: seq });
        }
        return Object.assign({}, a, { links });
      });
    const req = state.request || {};
    pane.preview = {
      job: st.id,
      method: st.method || req.method,
      params: {},
      target: null,
      objective: req.objective || null,
      timings: {},
      progress: st.progress,
      artifacts: orderArtifacts(artifacts, {}),
      noInput: Boolean(req.noInput),
      seq,
      ended: null,
    };
    renderCards(pane, pane.preview, false);
    pane.el.dataset.preview = String(seq);
  }

  /** A job that stopped before its result: its last preview stays, marked as such. */
  function markPreviewEnded(how) {
    const pane = state.current;
    if (!pane.preview) return;
    pane.preview.ended = how;
    renderPaneHead(pane);
  }

  async function cancel() {
    if (!state.job) return;
    clearError();
    const st = await apiJson(`/v1/jobs/${encodeURIComponent(state.job)}`, { method: "DELETE" });
    state.pollToken++;
    showJob(st);
    if (st.state === "cancelled") markPreviewEnded("cancelled");
    updateRunButton();
  }

  function resultUrl(job, query) {
    return `/v1/jobs/${encodeURIComponent(job)}/result?` + new URLSearchParams(query).toString();
  }

  /** ``link`` with ``extra`` set in its query string (same-origin links stay relative). */
  function withQuery(link, extra) {
    const u = new URL(link, location.href);
    for (const [k, v] of Object.entries(extra || {})) u.searchParams.set(k, String(v));
    return u.origin === location.origin ? u.pathname + u.search : u.href;
  }

  // ---------------------------------------------------------------- results and artifacts

  /** A result body (ExplanationResult JSON) as the viewer uses it, with its artifacts. */
  function readResult(body, extra) {
    const attribution = body.attribution || {};
    const r = {
      job: body.job,
      model: body.model,
      version: body.version,
      method: body.method,
      params: body.params || {},
      target: body.target || null,
      objective: body.objective || null,
      timings: body.timings || {},
      model_calls: body.model_calls,
      extras: body.extras || {},
      metrics: body.metrics || {},
      cost: body.cost || {},
      shape: attribution.shape || body.shape || null,
      views: body.views || {},
      cached: Boolean(extra && extra.cached),
      // a method without an input: nothing to draw its maps over
      noInput: Boolean(extra && extra.noInput),
    };
    r.legacy = !Array.isArray(body.artifacts);
    r.artifacts = r.legacy ? legacyArtifacts(r) : orderArtifacts(body.artifacts, r.views);
    return r;
  }

  /** A server without artifacts: the job's result is one attribution (its result links). */
  function legacyArtifacts(r) {
    const link = (format) => resultUrl(r.job, { format });
    const shape = r.shape;
    const artifacts = [
      {
        name: "attribution",
        type: "attribution",
        shape,
        axes: shape && shape.length === 2 ? ["y", "x"] : null,
        meta: {},
        links: { png: link("png"), overlay: link("overlay"), json: link("json"), npy: link("npy") },
      },
    ];
    if (r.method === "activation_maps") {
      // the job's PNG is the channel grid
      artifacts.push({
        name: "grid",
        type: "image",
        shape: null,
        meta: { caption: "Channels of the layer" },
        links: { png: link("png") },
      });
    }
    return artifacts;
  }

  /** Attribution maps first (the one ?format=overlay draws leading), then the rest in order. */
  function orderArtifacts(artifacts, views) {
    const rank = (a) => {
      if (a.type !== "attribution") return 2;
      return views && views.overlay === a.name ? 0 : 1;
    };
    return artifacts
      .filter((a) => a && typeof a === "object")
      .map((a, i) => ({ a, i }))
      .sort((p, q) => rank(p.a) - rank(q.a) || p.i - q.i)
      .map((x) => x.a);
  }

  const dataCache = new Map(); // artifact JSON link -> Promise of its body

  function artifactData(a) {
    const link = a.links && a.links.json;
    if (!link) return Promise.reject(new ApiError(0, "no_data", `${a.name} has no JSON link.`));
    if (!dataCache.has(link)) {
      const p = apiJson(link);
      dataCache.set(link, p);
      p.catch(() => dataCache.delete(link));
      while (dataCache.size > 64) dataCache.delete(dataCache.keys().next().value);
    }
    return dataCache.get(link);
  }

  function shapeText(shape) {
    return Array.isArray(shape) && shape.length ? shape.join(" × ") : "";
  }

  /** The frame every renderer draws in: <figure> with a caption (name, type, shape). */
  function cardFrame(a, wide) {
    const meta = [a.type !== a.name ? a.type : "", shapeText(a.shape)].filter(Boolean).join(" · ");
    const title = el("span", { class: "card-title", text: a.name });
    const node = el(
      "figure",
      {
        class: "card card-" + String(a.type).replace(/[^a-z0-9_-]/gi, "_") + (wide ? " wide" : ""),
        "data-type": a.type,
        "data-artifact": a.name,
      },
      el("figcaption", { class: "card-head" }, title, el("span", { class: "card-meta", text: meta }))
    );
    const body = el("div", { class: "card-body" });
    node.append(body);
    return { node, body, title };
  }

  function cardNote(frame, text, error) {
    frame.body.append(el("p", { class: "card-note" + (error ? " error-note" : ""), text }));
  }

  /** Load an artifact's JSON and call fn(data, body); failures go to the banner and the card. */
  function withData(a, frame, fn) {
    frame.node.setAttribute("aria-busy", "true");
    artifactData(a)
      .then((body) => fn((body && body.data) || {}, body))
      .catch((e) => {
        cardNote(frame, `Could not load ${a.name}: ${e.message || e}`, true);
        showError(e);
      })
      .finally(() => frame.node.removeAttribute("aria-busy"));
  }

  const LINK_ORDER = ["png", "overlay", "svg", "json", "npy"];
  const LINK_LABELS = { png: "PNG", overlay: "overlay", svg: "SVG", json: "JSON", npy: ".npy" };
  const LINK_TITLES = {
    png: "PNG picture",
    overlay: "PNG over the input image",
    svg: "SVG plot",
    json: "JSON",
    npy: "NumPy array (.npy)",
  };
  const LINK_EXT = { png: "png", overlay: "png", svg: "svg", json: "json", npy: "npy" };

  /** The artifact's download links; attribution PNGs follow the colour map and opacity. */
  function downloadLinks(a, ctx, ids) {
    const links = a.links || {};
    const keys = Object.keys(links)
      .filter((k) => typeof links[k] === "string")
      .sort((p, q) => {
        const i = LINK_ORDER.indexOf(p);
        const j = LINK_ORDER.indexOf(q);
        return (i < 0 ? 99 : i) - (j < 0 ? 99 : j);
      });
    const anchors = keys.map((k) => {
      const label = k === "png" && a.type === "attribution" ? "heatmap" : LINK_LABELS[k] || k;
      const what =
        k === "png" && a.type === "attribution" ? "colour-mapped PNG" : LINK_TITLES[k] || k;
      const anchor = el("a", {
        id: ids && ids[k] ? ids[k] : null,
        text: label,
        title: `${a.name} as ${what}`,
        "aria-label": `Download ${a.name} as ${what}`,
      });
      return { k, anchor };
    });
    const update = (display) => {
      const short = String(ctx.result.job || "").slice(0, 12);
      for (const { k, anchor } of anchors) {
        let href = links[k];
        let suffix = "";
        if (a.type === "attribution" && k === "png") {
          href = withQuery(href, { colormap: display.colormap });
          suffix = "-" + display.colormap;
        } else if (a.type === "attribution" && k === "overlay") {
          href = withQuery(href, { colormap: display.colormap, alpha: display.opacity });
          suffix = "-overlay";
        }
        anchor.href = href;
        anchor.download = `lantern-${short}-${a.name}${suffix}.${LINK_EXT[k] || "bin"}`;
      }
    };
    update(ctx.display);
    const node = anchors.length
      ? el("div", { class: "downloads" }, el("span", { text: "Download" }), ...anchors.map((x) => x.anchor))
      : null;
    return { node, update };
  }

  function withDownloads(frame, a, ctx, ids) {
    const dl = downloadLinks(a, ctx, ids);
    if (dl.node) frame.node.append(dl.node);
    return dl;
  }

  /** The input image with the heatmap over it at the display's opacity. */
  function drawOverlay(canvas, img, heat, display, job) {
    const w = img.naturalWidth;
    const h = img.naturalHeight;
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const g = canvas.getContext("2d");
    g.globalAlpha = 1;
    g.clearRect(0, 0, w, h);
    g.drawImage(img, 0, 0, w, h);
    if (heat) {
      g.globalAlpha = Number(display.opacity);
      g.drawImage(heat.img, 0, 0, w, h);
      g.globalAlpha = 1;
      canvas.dataset.state = "overlay";
      canvas.dataset.job = job;
      canvas.dataset.colormap = heat.cmap;
    } else {
      canvas.dataset.state = "image";
      delete canvas.dataset.job;
    }
    canvas.dataset.opacity = String(display.opacity);
  }

  // ---- renderers: one per artifact type, each (artifact, ctx) -> {node, update?(display)}
  //      ctx: {result, image, display, claim(what), first(what)} (see renderPane)

  function renderAttribution(a, ctx) {
    const links = a.links || {};
    const img = ctx.image && ctx.image.img;
    if (!links.overlay || !img) return links.png ? renderImage(a, ctx) : renderGeneric(a, ctx);
    const primary = ctx.claim("attribution");
    const frame = cardFrame(a, ctx.first("attribution"));
    const canvas = el("canvas", {
      id: primary ? "canvas" : null,
      class: "heat",
      role: "img",
      "aria-label": `${a.name}: heatmap over the input image`,
      "data-state": "image",
    });
    frame.body.append(el("div", { class: "canvas-wrap" }, canvas));
    const dl = withDownloads(
      frame,
      a,
      ctx,
      primary ? { png: "dl-png", overlay: "dl-overlay", json: "dl-json", npy: "dl-npy" } : null
    );
    let heat = null;
    let token = 0;
    const draw = () => drawOverlay(canvas, img, heat, ctx.display, ctx.result.job);
    // the heatmap at the image's size: the overlay with alpha=1 (resized like the server's)
    const load = async () => {
      const cmap = ctx.display.colormap;
      if (heat && heat.cmap === cmap) return draw();
      const t = ++token;
      const r = await api(withQuery(links.overlay, { colormap: cmap, alpha: "1" }));
      const url = URL.createObjectURL(await r.blob());
      try {
        const heatImg = await loadImage(url);
        if (t !== token) return;
        heat = { img: heatImg, cmap };
      } finally {
        URL.revokeObjectURL(url);
      }
      draw();
    };
    draw();
    guarded(load)();
    return {
      node: frame.node,
      update(display) {
        draw();
        dl.update(display);
        guarded(load)();
      },
    };
  }

  function renderImage(a, ctx) {
    const links = a.links || {};
    if (!links.png) return renderGeneric(a, ctx);
    const frame = cardFrame(a, false);
    const caption = a.meta && typeof a.meta.caption === "string" ? a.meta.caption : "";
    const colormapped = a.type === "attribution";
    const picture = el("img", {
      class: "artifact-img",
      alt: caption || `${a.name} (${a.type})`,
      src: colormapped ? withQuery(links.png, { colormap: ctx.display.colormap }) : links.png,
    });
    picture.addEventListener("error", () => cardNote(frame, "The picture could not be loaded.", true));
    frame.body.append(picture);
    if (caption) frame.body.append(el("p", { class: "hint", text: caption }));
    const dl = withDownloads(frame, a, ctx, null);
    return {
      node: frame.node,
      update(display) {
        dl.update(display);
        if (colormapped) picture.src = withQuery(links.png, { colormap: display.colormap });
      },
    };
  }

  function renderSegments(a, ctx) {
    const links = a.links || {};
    const frame = cardFrame(a, false);
    if (links.png) {
      frame.body.append(
        el("img", {
          class: "artifact-img",
          src: links.png,
          alt: `${a.name}: the top segments over the input (green for the class, red against)`,
        })
      );
    }
    const legend = el("div", { class: "segments" });
    frame.body.append(legend);
    if (links.json) {
      withData(a, frame, (data) => {
        const weights = Array.isArray(data.weights) ? data.weights : [];
        const pos = data.positive || [];
        const neg = data.negative || [];
        const top = weights
          .map((w, i) => [i, Number(w)])
          .sort((p, q) => Math.abs(q[1]) - Math.abs(p[1]))
          .slice(0, 6);
        const max = Math.max(1e-12, ...top.map((t) => Math.abs(t[1])));
        legend.replaceChildren(
          el("p", {
            class: "hint",
            text: `${weights.length} segments · ${pos.length} shown for the class, ${neg.length} against`,
          }),
          el(
            "table",
            { class: "table bars", "aria-label": "Segments with the largest weights" },
            el(
              "tbody",
              {},
              ...top.map(([i, w]) =>
                el(
                  "tr",
                  {},
                  el("td", { class: "seg-id", text: "#" + i }),
                  el(
                    "td",
                    {},
                    el("span", {
                      class: "wbar " + (w >= 0 ? "pos" : "neg"),
                      style: `width:${(Math.abs(w) / max) * 100}%`,
                    })
                  ),
                  el("td", { class: "num", text: fmtNumber(w) })
                )
              )
            )
          )
        );
      });
    }
    const dl = withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  function renderCurve(a, ctx) {
    const frame = cardFrame(a, false);
    const plot = el("div", { class: "plot" });
    frame.body.append(plot);
    withData(a, frame, (data, body) => {
      // labels and AUC: in the data, or in the artifact's meta
      const d = Object.assign({}, a.meta || {}, (body && body.meta) || {}, data);
      const auc = typeof d.auc === "number" ? d.auc : null;
      if (auc !== null) frame.title.textContent = `${a.name} · AUC ${fmtNumber(auc)}`;
      plot.replaceChildren(curveSvg(a.name, d, auc));
    });
    const dl = withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  function renderTable(a, ctx) {
    const frame = cardFrame(a, false);
    const LIMIT = 200;
    withData(a, frame, (data) => {
      const cols = Array.isArray(data.columns) ? data.columns : [];
      const rows = Array.isArray(data.rows) ? data.rows : [];
      const cell = (v) => {
        if (typeof v === "number") return el("td", { class: "num", text: fmtNumber(v) });
        if (v === null || v === undefined) return el("td", { text: "—" });
        return el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) });
      };
      const table = el(
        "table",
        { class: "table data-table", "aria-label": a.name },
        el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { scope: "col", text: String(c) })))),
        el(
          "tbody",
          {},
          ...rows.slice(0, LIMIT).map((r) => el("tr", {}, ...(Array.isArray(r) ? r : [r]).map(cell)))
        )
      );
      frame.body.replaceChildren(el("div", { class: "table-scroll" }, table));
      if (rows.length > LIMIT) cardNote(frame, `${rows.length - LIMIT} more rows in the JSON download.`);
    });
    const dl = withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  /** Any other type: what it is, and its downloads. */
  function renderGeneric(a, ctx) {
    const frame = cardFrame(a, false);
    const rows = [["type", String(a.type)]];
    if (shapeText(a.shape)) rows.push(["shape", shapeText(a.shape)]);
    if (Array.isArray(a.axes)) rows.push(["axes", a.axes.join(", ")]);
    for (const [k, v] of Object.entries(a.meta || {})) {
      if (["string", "number", "boolean"].includes(typeof v)) {
        rows.push([k, typeof v === "number" ? fmtNumber(v) : String(v)]);
      }
    }
    const tbody = el("tbody");
    kvRows(tbody, rows.slice(0, 12));
    frame.body.append(el("table", { class: "table kv" }, tbody));
    const dl = withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  const RENDERERS = {
    attribution: renderAttribution,
    image: renderImage,
    segments: renderSegments,
    curve: renderCurve,
    table: renderTable,
  };

  function renderArtifact(a, ctx) {
    const render = Object.prototype.hasOwnProperty.call(RENDERERS, a.type)
      ? RENDERERS[a.type]
      : renderGeneric;
    try {
      return render(a, ctx);
    } catch (e) {
      showError(e);
      return renderGeneric(a, ctx);
    }
  }

  // ---- curve plots: inline SVG from the JSON (axes, ticks, line, AUC in the title)

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) {
      const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
      lo -= pad;
      hi += pad;
    }
    const raw = (hi - lo) / Math.max(1, count - 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw - 1e-12) || 10 * mag;
    const start = Math.floor(lo / step + 1e-9) * step;
    const end = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = start; v <= end + step / 2 && ticks.length < 20; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
    }
    return ticks;
  }

  function curveSvg(name, data, auc) {
    const xsRaw = Array.isArray(data.x) ? data.x : [];
    const ysRaw = Array.isArray(data.y) ? data.y : [];
    const pts = [];
    for (let i = 0; i < Math.min(xsRaw.length, ysRaw.length); i++) {
      const x = Number(xsRaw[i]);
      const y = Number(ysRaw[i]);
      if (isFinite(x) && isFinite(y)) pts.push([x, y]);
    }
    const title = typeof auc === "number" ? `${name} · AUC ${fmtNumber(auc)}` : name;
    const W = 320;
    const H = 190;
    const L = 46;
    const R = 12;
    const T = 10;
    const B = 40;
    const svg = svgEl("svg", {
      class: "curve",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `${title}: ${data.y_label || "y"} against ${data.x_label || "x"}`,
      "data-points": pts.length,
    });
    svg.append(svgEl("title", { text: title })); // (the card's caption shows it too)
    if (!pts.length) {
      svg.append(svgEl("text", { class: "tick", x: W / 2, y: H / 2, "text-anchor": "middle", text: "no points" }));
      return svg;
    }
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    const unit = (v) => v.every((t) => t >= 0 && t <= 1);
    const xt = unit(xs) ? [0, 0.25, 0.5, 0.75, 1] : niceTicks(Math.min(...xs), Math.max(...xs), 5);
    const yt = unit(ys) ? [0, 0.25, 0.5, 0.75, 1] : niceTicks(Math.min(...ys), Math.max(...ys), 5);
    const [x0, x1] = [xt[0], xt[xt.length - 1]];
    const [y0, y1] = [yt[0], yt[yt.length - 1]];
    const sx = (v) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
    const sy = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - T - B);
    const f = (v) => v.toFixed(1);
    const axis = svgEl("g", { class: "axis" });
    for (const v of yt) {
      axis.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: f(sy(v)), y2: f(sy(v)) }));
      axis.append(
        svgEl("text", { class: "tick", x: L - 5, y: f(sy(v) + 3.5), "text-anchor": "end", text: fmtNumber(v) })
      );
    }
    for (const v of xt) {
      axis.append(svgEl("line", { class: "tick-mark", x1: f(sx(v)), x2: f(sx(v)), y1: H - B, y2: H - B + 4 }));
      axis.append(
        svgEl("text", { class: "tick", x: f(sx(v)), y: H - B + 15, "text-anchor": "middle", text: fmtNumber(v) })
      );
    }
    axis.append(svgEl("line", { class: "axis-line", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    axis.append(svgEl("line", { class: "axis-line", x1: L, x2: L, y1: T, y2: H - B }));
    if (data.x_label) {
      axis.append(
        svgEl("text", { class: "axis-label", x: f((L + W - R) / 2), y: H - 6, "text-anchor": "middle", text: data.x_label })
      );
    }
    if (data.y_label) {
      const cy = f((T + H - B) / 2);
      axis.append(
        svgEl("text", {
          class: "axis-label",
          x: 11,
          y: cy,
          "text-anchor": "middle",
          transform: `rotate(-90 11 ${cy})`,
          text: data.y_label,
        })
      );
    }
    const line = pts.map((p, i) => `${i ? "L" : "M"}${f(sx(p[0]))} ${f(sy(p[1]))}`).join(" ");
    const base = f(sy(Math.max(y0, Math.min(0, y1))));
    const area = `${line} L${f(sx(pts[pts.length - 1][0]))} ${base} L${f(sx(pts[0][0]))} ${base} Z`;
    svg.append(axis, svgEl("path", { class: "area", d: area }), svgEl("path", { class: "line", d: line }));
    return svg;
  }

  // ---------------------------------------------------------------- panes (side by side)

  let preview = null; // {node, canvas, placeholder, text}: the input image before an answer

  function drawPreview() {
    const canvas = preview.canvas;
    const method = currentMethod();
    // a method without an input shows no image: what it will do instead
    const img = takesInput(method) ? state.image && state.image.img : null;
    preview.placeholder.hidden = Boolean(img);
    preview.placeholder.textContent = takesInput(method)
      ? preview.text
      : `${method.name} takes no input: press Explain to run it on the objective alone` +
        (method.execution === "job" ? "; its previews appear here while it runs." : ".");
    preview.node.dataset.input = takesInput(method) ? "item" : "none";
    if (!img) {
      canvas.dataset.state = "empty";
      return;
    }
    drawOverlay(canvas, img, null, state.display, null);
  }

  function resetResult() {
    const pane = state.current;
    pane.result = null;
    pane.preview = null;
    pane.previewSignature = null;
    delete pane.el.dataset.preview;
    pane.cards = [];
    preview.canvas.id = "canvas";
    preview.placeholder.id = "placeholder";
    pane.body.replaceChildren(preview.node);
    drawPreview();
    renderPaneHead(pane);
    $("summary-section").hidden = true;
    $("extras-section").hidden = true;
    updateCompareControls();
  }

  function showResult(result) {
    const pane = state.current;
    pane.result = result;
    pane.preview = null; // the result's artifacts replace the previews
    pane.previewSignature = null;
    delete pane.el.dataset.preview;
    renderPane(pane, true);
    renderSummary(result);
    renderExtras(Object.assign({}, result.extras, { metrics: result.metrics }));
    updateCompareControls();
  }

  /** Draw a pane's result, one card per artifact; only the current pane's cards get ids. */
  function renderPane(pane, primary) {
    renderCards(pane, pane.result, primary);
  }

  /** One card per artifact of ``result`` (the pane's result, or a running job's preview). */
  function renderCards(pane, result, primary) {
    const claimed = new Set();
    const seen = new Set();
    const ctx = {
      result,
      // no input, nothing to overlay: attribution maps are drawn as pictures
      image: result.noInput ? null : state.image,
      display: state.display,
      // whether this card gets the page's element ids (#canvas, #dl-png, ...): the first
      // of its kind in the current pane
      claim: (what) => {
        if (!primary || claimed.has(what)) return false;
        claimed.add(what);
        return true;
      },
      // whether this is the pane's first card of its kind (drawn large)
      first: (what) => {
        if (seen.has(what)) return false;
        seen.add(what);
        return true;
      },
    };
    pane.cards = result.artifacts.map((a) => renderArtifact(a, ctx));
    preview.canvas.removeAttribute("id");
    preview.placeholder.removeAttribute("id");
    pane.body.replaceChildren(...pane.cards.map((c) => c.node));
    if (!pane.cards.length) pane.body.append(el("p", { class: "hint", text: "This result has no artifacts." }));
    renderPaneHead(pane);
  }

  /** Cards for ``result``'s artifacts on another page (the datasets page): the same
   *  renderers, no input image under them, and none of the Explain page's element ids.
   *  Returns the renderers' answers ({node, update?}). */
  function resultCards(result) {
    const seen = new Set();
    const ctx = {
      result,
      image: null,
      display: state.display,
      claim: () => false,
      first: (what) => {
        if (seen.has(what)) return false;
        seen.add(what);
        return true;
      },
    };
    return result.artifacts.map((a) => renderArtifact(a, ctx));
  }

  // ---- dataset images (GET /v1/datasets/{dataset}/images): for renderers that show them

  /** The URL of image ``index`` of a dataset as PNG; opts: {size (8..512), version}. */
  function datasetImageUrl(dataset, index, opts) {
    const q = new URLSearchParams();
    if (opts && opts.size) q.set("size", String(opts.size));
    if (opts && opts.version) q.set("version", String(opts.version));
    const qs = q.toString();
    return `/v1/datasets/${encodeURIComponent(dataset)}/images/${Number(index)}` + (qs ? "?" + qs : "");
  }

  /** The images of a dataset named by id (the paths analyses report), in that order:
   *  [{index, id, label, width, height}] (GET /v1/datasets/{dataset}/images?id=...). */
  async function datasetImages(dataset, ids, version) {
    const out = [];
    for (let i = 0; i < ids.length; i += 200) {
      const q = new URLSearchParams();
      for (const id of ids.slice(i, i + 200)) q.append("id", String(id));
      if (version) q.set("version", String(version));
      const body = await apiJson(`/v1/datasets/${encodeURIComponent(dataset)}/images?` + q.toString());
      out.push(...body.images);
    }
    return out;
  }

  function targetText(r) {
    const o = r.objective;
    if (o && o.kind && o.kind !== "class") return objectiveText(o);
    const t = o && o.kind === "class" && o.label !== undefined ? o : r.target;
    const score = o && o.kind === "class" && o.score ? ` · ${o.score}` : "";
    if (t) return `${t.label} (#${t.index})${score}`;
    return o && o.kind === "class" ? objectiveText(o) : "";
  }

  function classText(target) {
    if (target === undefined || target === null || target === "top1") return "top-1 prediction";
    const m = currentModel();
    const labels = (m && m.manifest && m.manifest.labels) || [];
    if (typeof target === "number") return labels[target] !== undefined ? `${labels[target]} (#${target})` : `class #${target}`;
    return String(target);
  }

  function objectiveText(o) {
    if (o.kind === "class") return classText(o.target) + (o.score ? ` · ${o.score}` : "");
    const layer = o.layer ? ` of ${o.layer}` : "";
    if (o.kind === "channel") return `channel ${o.channel}${layer}`;
    if (o.kind === "layer_norm") return `norm${layer}`;
    if (o.kind === "neuron") {
      const at = o.y !== undefined && o.y !== null ? ` at (${o.y}, ${o.x})` : "";
      return `neuron ${o.channel}${at}${layer}`;
    }
    if (o.kind === "direction") {
      const n = Array.isArray(o.vector) ? ` (${o.vector.length} dims)` : "";
      return `direction${n} in ${o.layer || "?"}`;
    }
    const rest = Object.entries(o)
      .filter(([k]) => !["kind", "layer"].includes(k))
      .filter(([, v]) => v === null || typeof v !== "object")
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    return `${o.kind}${layer}${rest ? " (" + rest + ")" : ""}`;
  }

  function paramsText(params) {
    return Object.entries(params || {})
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(", ");
  }

  function timingsText(r) {
    const t = r.timings || {};
    const parts = [];
    if (typeof t.compute_ms === "number") parts.push(`compute ${fmtDuration(t.compute_ms)}`);
    if (typeof t.queued_ms === "number") parts.push(`queued ${fmtDuration(t.queued_ms)}`);
    if (typeof r.model_calls === "number") parts.push(`${r.model_calls} model calls`);
    if (r.cached) parts.push("cached");
    return parts.join(" · ");
  }

  function scoresText(r) {
    return Object.entries(r.metrics || {})
      .filter(([, v]) => v && typeof v.auc === "number")
      .map(([k, v]) => `${k} AUC ${fmtNumber(v.auc)}`)
      .join(" · ");
  }

  /** A pane's caption: method, target (or objective), params, timings and scores. */
  function renderPaneHead(pane) {
    const head = pane.head;
    const r = pane.result;
    const comparing = Boolean(state.pinned);
    if (!r && pane.preview) {
      const p = pane.preview;
      const first = p.artifacts.find((a) => a.meta && typeof a.meta.caption === "string");
      const caption = first ? " · " + first.meta.caption : "";
      const note = p.ended
        ? `the job ${p.ended === "cancelled" ? "was cancelled" : p.ended}: its last preview${caption}`
        : `updated while the job runs${caption}`;
      head.hidden = false;
      head.replaceChildren(
        el(
          "div",
          { class: "pane-title" },
          el("span", { class: "badge preview", text: "Preview" }),
          el("strong", { class: "pane-method", text: p.method }),
          el("span", { class: "pane-target", text: "→ " + targetText(p) })
        ),
        el("div", { class: "pane-preview-note muted", text: note })
      );
      pane.el.setAttribute("aria-label", `Preview of the running job: ${p.method}, ${targetText(p)}`);
      return;
    }
    if (!r) {
      head.hidden = !comparing;
      head.replaceChildren(
        el(
          "div",
          { class: "pane-title" },
          el("span", { class: "badge", text: "Next" }),
          el("span", { class: "muted", text: "Pick another method or target and press Explain." })
        )
      );
      return;
    }
    head.hidden = false;
    const pinned = pane === state.pinned;
    const params = paramsText(r.params);
    const scores = scoresText(r);
    const parts = [
      el(
        "div",
        { class: "pane-title" },
        comparing ? el("span", { class: "badge" + (pinned ? " pinned" : ""), text: pinned ? "Pinned" : "Latest" }) : null,
        el("strong", { class: "pane-method", text: r.method }),
        el("span", { class: "pane-target", text: "→ " + targetText(r) })
      ),
      params ? el("code", { class: "pane-params params-text", text: params }) : null,
      el("div", { class: "timings", text: timingsText(r) }),
      scores ? el("div", { class: "pane-scores", text: scores }) : null,
    ];
    head.replaceChildren(...parts.filter(Boolean));
    pane.el.setAttribute("aria-label", `${pinned ? "Pinned" : "Latest"} answer: ${r.method}, ${targetText(r)}`);
  }

  function updateCompareControls() {
    const comparing = Boolean(state.pinned);
    $("pin").disabled = !state.current.result;
    $("clear-compare").hidden = !comparing;
    $("pin").textContent = comparing ? "Pin this instead" : "Pin for comparison";
    document.querySelector(".layout").classList.toggle("comparing", comparing);
    $("panes").dataset.panes = comparing ? "2" : "1";
  }

  /** Keep the current answer on the left; the next one is drawn beside it. */
  function pin() {
    const cur = state.current;
    if (!cur.result) return;
    if (state.pinned) state.pinned.el.remove();
    const section = el("section", { class: "pane pinned" }, cur.head, cur.body);
    for (const node of section.querySelectorAll("[id]")) node.removeAttribute("id");
    state.pinned = { el: section, head: cur.head, body: cur.body, cards: cur.cards, result: cur.result };
    $("panes").insertBefore(section, cur.el);
    cur.head = el("header", { class: "pane-head" });
    cur.body = el("div", { class: "cards" });
    cur.el.append(cur.head, cur.body);
    resetResult();
    renderPaneHead(state.pinned);
  }

  function clearComparison() {
    if (!state.pinned) return;
    state.pinned.el.remove();
    state.pinned = null;
    renderPaneHead(state.current);
    updateCompareControls();
  }

  // ---------------------------------------------------------------- summary and scores

  function kvRows(tbody, rows) {
    tbody.replaceChildren(
      ...rows.map(([k, v, cls]) =>
        el("tr", {}, el("td", { text: k }), el("td", { class: cls || "" }, v))
      )
    );
  }

  function renderSummary(r) {
    const rows = [];
    if (r.target) {
      rows.push(["target", `${r.target.label} (#${r.target.index})`]);
      rows.push(["score", fmtNumber(r.target.score), "num"]);
    }
    if (r.objective && r.objective.kind && r.objective.kind !== "class") {
      rows.push(["objective", objectiveText(r.objective)]);
    }
    if (r.method) rows.push(["method", r.method]);
    const params = paramsText(r.params);
    if (params) rows.push(["params", el("code", { class: "params-text", text: params })]);
    if (r.shape && r.artifacts.some((a) => a.type === "attribution")) {
      rows.push(["attribution", r.shape.join(" × ")]);
    }
    if (!r.legacy && r.artifacts.length) {
      rows.push(["artifacts", r.artifacts.map((a) => a.name).join(", ")]);
    }
    if (r.model_calls !== undefined && r.model_calls !== null) {
      rows.push(["model calls", String(r.model_calls), "num"]);
    }
    const t = r.timings || {};
    if (typeof t.compute_ms === "number") rows.push(["compute", fmtDuration(t.compute_ms), "num timing"]);
    if (typeof t.queued_ms === "number") rows.push(["queued", fmtDuration(t.queued_ms), "num timing"]);
    if (r.cached) rows.push(["answer", "cached result"]);
    rows.push(["job", el("code", { text: r.job.slice(0, 16) + "…", title: r.job })]);
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

  function updateCards() {
    for (const pane of [state.pinned, state.current]) {
      if (!pane) continue;
      for (const c of pane.cards) if (c.update) c.update(state.display);
    }
    if (!state.current.result) drawPreview();
  }

  function onOpacity() {
    state.display.opacity = Number($("opacity").value);
    $("opacity-value").textContent = Math.round(state.display.opacity * 100) + "%";
    updateCards();
  }

  function onColormap() {
    const cmap = $("colormap").value;
    state.display.colormap = cmap;
    $("colorbar").dataset.cmap = cmap;
    const signed = cmap === "coolwarm";
    $("legend-low").textContent = signed ? "−max" : "0";
    $("legend-high").textContent = signed ? "+max" : "max";
    updateCards();
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    const current = $("pane-current");
    state.current = {
      el: current,
      head: current.querySelector(".pane-head"),
      body: current.querySelector(".cards"),
      cards: [],
      result: null,
    };
    preview = {
      node: $("preview"),
      canvas: $("canvas"),
      placeholder: $("placeholder"),
      text: $("placeholder").textContent,
    };
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
    $("objective-kind").addEventListener("change", onObjectiveKind);
    $("objective-layer").addEventListener("change", updateObjectiveLayerInfo);
    $("target-index").addEventListener("input", markSelectedPrediction);
    $("run").addEventListener("click", guarded(run));
    $("cancel").addEventListener("click", guarded(cancel));
    $("opacity").addEventListener("input", onOpacity);
    $("colormap").addEventListener("change", onColormap);
    $("pin").addEventListener("click", pin);
    $("clear-compare").addEventListener("click", clearComparison);
    onOpacity();
    onColormap();
    onTargetKind();
    updateCompareControls();
    guarded(async () => {
      await Promise.all([loadModels(), loadMethods()]);
      document.body.dataset.ready = "1";
    })();
  }

  // for extensions and tests: add a renderer for a new artifact type
  // What a renderer file (static/renderers/*.js) needs: register itself, and build a card
  // like the built-in ones (see renderGeneric for the shape of a renderer).
  window.Lantern = Object.freeze({
    RENDERERS,
    registerRenderer(type, fn) {
      RENDERERS[type] = fn;
    },
    registerInputEditor(modality, factory) {
      INPUT_EDITORS[modality] = factory;
      if (modalityOf(currentModel()) === modality) mountInputEditor(currentModel());
    },
    api,
    apiJson,
    el,
    svgEl,
    cardFrame,
    withDownloads,
    kvRows,
    shapeText,
    showError,
    renderGeneric,
    renderImage,
    fmtDuration,
    fmtNumber,
    fmtBytes,
    ApiError,
    guarded,
    clearError,
    artifactData,
    readResult,
    resultCards,
    paramsForm,
    layersOf,
    layerText,
    datasetImageUrl,
    datasetImages,
  });

  init();
})();
