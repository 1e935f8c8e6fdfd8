/* Lantern viewer: the datasets page (#datasets), beside the Explain page (#explain).
 *
 * Lists the registered datasets (GET /v1/datasets: name, version, images, classes, sizes,
 * built-in), shows one with a strip of its images (GET /v1/datasets/{d}/images/{i}?size=),
 * uploads a zip (POST /v1/datasets, multipart; a refusal shows its code, its sentence and
 * the files it rejected) and deletes one that is not built in. "Analyse" runs a dataset
 * analysis of a model over a dataset as a job (POST /v1/explanations with `dataset`), with
 * its progress and a cancel button, and draws the result with the viewer's renderers, one
 * card per artifact (window.Lantern.resultCards) — the analyses listed are every method of
 * kind "dataset" in GET /v1/methods, their params form is built from each method's
 * params_schema (a JSON box where a method has none), and a new analysis with a new
 * artifact type needs only its renderer file (static/renderers/*.js), not this page.
 */
"use strict";

(function () {
  const L = window.Lantern;
  const el = L.el;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 250;
  const STRIP = 16; // images shown with a dataset's details
  const OBJECTIVES = {
    class: "Class score",
    channel: "Channel of a layer",
    neuron: "Neuron of a layer",
    layer_norm: "Layer norm",
  };

  const ds = {
    datasets: [], // DatasetInfo[]
    models: [], // ModelInfo[] (images)
    methods: [], // MethodInfo[] of kind "dataset"
    form: null, // {get(), refreshLayers()} of the params form, or null (the JSON box)
    selected: null, // name of the dataset whose details are shown
    layers: {}, // "model@version" -> {layers, defaultLayer}
    job: null,
    token: 0,
    loaded: false,
  };

  // ---------------------------------------------------------------- pages

  function route() {
    const datasets = location.hash === "#datasets";
    $("datasets-page").hidden = !datasets;
    $("explain-page").hidden = datasets;
    $("nav-datasets").toggleAttribute("aria-current", datasets);
    $("nav-explain").toggleAttribute("aria-current", !datasets);
    if (datasets) $("nav-datasets").setAttribute("aria-current", "page");
    else $("nav-explain").setAttribute("aria-current", "page");
    document.body.dataset.page = datasets ? "datasets" : "explain";
    if (!datasets) return;
    if (!ds.loaded) {
      ds.loaded = true;
      L.guarded(loadAll)();
    } else {
      takeExplainChoice();
    }
  }

  async function loadAll() {
    await Promise.all([loadDatasets(), loadModels(), loadMethods()]);
    takeExplainChoice();
    $("datasets-page").dataset.ready = "1";
  }

  /** A dataset analysis picked on the Explain page (its note links here): the same model
   *  and analysis are picked here. */
  function takeExplainChoice() {
    const method = ds.methods.find((m) => m.name === $("method").value);
    if (!method) return;
    if (ds.models.some((m) => m.name === $("model").value) && $("ds-model").value !== $("model").value) {
      $("ds-model").value = $("model").value;
      onModelChange();
    }
    if ($("ds-method").value !== method.name) {
      $("ds-method").value = method.name;
      onMethodChange();
    }
  }

  // ---------------------------------------------------------------- the list

  function sizesText(s) {
    if (!s) return "";
    const common = Object.keys(s.common || {});
    if (s.min_width === s.max_width && s.min_height === s.max_height) {
      return `${s.min_width}×${s.min_height}`;
    }
    const range = `${s.min_width}–${s.max_width} × ${s.min_height}–${s.max_height}`;
    return common.length ? `${range} (mostly ${common[0].replace("x", "×")})` : range;
  }

  function classesText(d) {
    const n = d.classes.length;
    if (!n) return "unlabelled";
    const shown = d.classes.slice(0, 6).join(", ");
    return `${n}: ${shown}${n > 6 ? ", …" : ""}`;
  }

  async function loadDatasets(select) {
    const body = await L.apiJson("/v1/datasets");
    ds.datasets = body.datasets;
    renderList();
    const pick = $("ds-dataset");
    const previous = select || pick.value;
    pick.replaceChildren(
      ...ds.datasets.map((d) => el("option", { value: d.name, text: `${d.name} (${d.count} images)` }))
    );
    if (previous && ds.datasets.some((d) => d.name === previous)) pick.value = previous;
    if (select) showDetail(select);
    else if (ds.selected && !ds.datasets.some((d) => d.name === ds.selected)) showDetail(null);
    updateRun();
  }

  function renderList() {
    const tbody = $("ds-list").tBodies[0];
    if (!ds.datasets.length) {
      tbody.replaceChildren(
        el("tr", { class: "empty" }, el("td", { colspan: 4, text: "No datasets yet: upload a zip." }))
      );
      return;
    }
    tbody.replaceChildren(...ds.datasets.map(listRow));
  }

  function listRow(d) {
    const actions = el("td", { class: "ds-actions" });
    if (!d.builtin) {
      actions.append(
        el("button", {
          type: "button",
          class: "ds-delete",
          text: "Delete",
          title: `Delete ${d.name} and its versions`,
          onclick: (ev) => {
            ev.stopPropagation();
            askDelete(d, actions);
          },
        })
      );
    }
    return el(
      "tr",
      {
        "data-dataset": d.name,
        "data-builtin": d.builtin ? "1" : "0",
        class: d.name === ds.selected ? "selected" : null,
        title: `${d.name} · version ${d.version} · ${sizesText(d.sizes)}`,
        onclick: () => showDetail(d.name),
      },
      el(
        "td",
        { class: "ds-name" },
        el("strong", { text: d.name }),
        d.builtin ? el("span", { class: "badge", text: "built-in" }) : null,
        el("div", { class: "ds-version muted", text: `v ${d.version.slice(0, 10)} · ${sizesText(d.sizes)}` })
      ),
      el("td", { class: "num ds-count", text: String(d.count) }),
      el("td", { class: "ds-classes", text: classesText(d) }),
      actions
    );
  }

  /** Delete in two clicks: "Delete" asks, "Yes" deletes (a built-in has no button). */
  function askDelete(d, cell) {
    const yes = el("button", {
      type: "button",
      class: "ds-delete-yes danger",
      text: "Yes, delete",
      onclick: L.guarded(async (ev) => {
        ev.stopPropagation();
        yes.disabled = true;
        await L.api(`/v1/datasets/${encodeURIComponent(d.name)}`, { method: "DELETE" });
        if (ds.selected === d.name) showDetail(null);
        await loadDatasets();
      }),
    });
    const no = el("button", {
      type: "button",
      class: "ds-delete-no",
      text: "No",
      onclick: (ev) => {
        ev.stopPropagation();
        renderList();
      },
    });
    cell.replaceChildren(el("span", { class: "muted", text: `Delete ${d.name}?` }), yes, no);
  }

  // ---------------------------------------------------------------- one dataset

  function showDetail(name) {
    ds.selected = name;
    for (const tr of $("ds-list").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.dataset === name);
    const box = $("ds-detail");
    const d = ds.datasets.find((x) => x.name === name);
    if (!d) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    if ($("ds-dataset").value !== d.name && ds.datasets.some((x) => x.name === d.name)) {
      $("ds-dataset").value = d.name;
    }
    const rows = [
      ["version", d.version],
      ["source", d.source + (d.builtin ? " (built-in)" : "")],
      ["images", String(d.count) + (d.unlabelled ? ` (${d.unlabelled} unlabelled)` : "")],
      ["classes", d.classes.map((c) => `${c} (${d.class_counts[c]})`).join(", ") || "none"],
      ["sizes", sizesText(d.sizes)],
      ["bytes", L.fmtBytes(d.bytes)],
    ];
    if (d.description) rows.push(["about", d.description]);
    if (d.rejected && d.rejected.length) rows.push(["left out", `${d.rejected.length} files`]);
    const tbody = el("tbody");
    L.kvRows(tbody, rows);
    const strip = el("div", { class: "ds-strip", "aria-label": `Images of ${d.name}` });
    const more = el("button", { type: "button", class: "ds-more", text: "More images", hidden: true });
    let offset = 0;
    // a page of the dataset's images (GET /v1/datasets/{d}/images), each as a thumbnail
    const page = async () => {
      more.disabled = true;
      const q = new URLSearchParams({ offset: String(offset), limit: String(STRIP), version: d.version });
      const body = await L.apiJson(`/v1/datasets/${encodeURIComponent(d.name)}/images?` + q.toString());
      if (ds.selected !== d.name) return;
      for (const img of body.images) {
        strip.append(
          el("img", {
            class: "ds-thumb",
            src: L.datasetImageUrl(d.name, img.index, { size: 48, version: d.version }),
            alt: `${d.name} image ${img.index}: ${img.id}`,
            title: `#${img.index} · ${img.id}` + (img.label !== null ? ` · label ${img.label}` : ""),
            "data-index": img.index,
            width: 48,
            height: 48,
          })
        );
      }
      offset += body.images.length;
      strip.dataset.shown = String(offset);
      more.hidden = offset >= body.count;
      more.disabled = false;
    };
    more.addEventListener("click", L.guarded(page));
    L.guarded(page)();
    box.replaceChildren(
      el("h3", { text: d.name }),
      el("table", { class: "table kv" }, tbody),
      strip,
      more
    );
    box.dataset.dataset = d.name;
    box.hidden = false;
    updateRun();
  }

  // ---------------------------------------------------------------- upload

  function uploadNote(ok, title, text, rejected) {
    const box = $("ds-upload-result");
    box.className = "ds-upload-result " + (ok ? "ok" : "refused");
    const parts = [el("div", {}, el("strong", { class: "ds-upload-code", text: title }), " ", el("span", { text }))];
    if (Array.isArray(rejected) && rejected.length) {
      parts.push(
        el("p", { class: "hint", text: ok ? "Files left out:" : "Rejected files:" }),
        el(
          "ul",
          { class: "ds-rejected" },
          ...rejected.slice(0, 50).map((r) =>
            el(
              "li",
              { "data-path": r.path },
              el("code", { text: r.path }),
              ` — ${r.code}: ${r.reason}`
            )
          ),
          rejected.length > 50 ? el("li", { text: `… and ${rejected.length - 50} more` }) : null
        )
      );
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  async function upload() {
    L.clearError();
    const file = $("ds-file").files[0];
    const name = $("ds-name").value.trim();
    if (!file) return uploadNote(false, "missing_file", "Choose a zip of images to upload.");
    if (!name) return uploadNote(false, "missing_name", "Name the dataset.");
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("name", name);
    if ($("ds-strict").checked) form.append("strict", "true");
    const btn = $("ds-upload");
    btn.disabled = true;
    $("ds-upload-result").hidden = true;
    try {
      const info = await L.apiJson("/v1/datasets", { method: "POST", body: form });
      uploadNote(
        true,
        "Registered",
        `${info.name}: ${info.count} images, ${info.classes.length} classes (version ${info.version.slice(0, 10)}).`,
        info.rejected
      );
      await loadDatasets(info.name);
    } catch (e) {
      const details = (e && e.details) || {};
      uploadNote(false, e.code || "error", e.message || String(e), details.rejected);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- analysis: pickers

  async function loadModels() {
    const body = await L.apiJson("/v1/models");
    const modality = (m) => (m.manifest && m.manifest.modality) || "image";
    ds.models = body.models.filter((m) => modality(m) === "image");
    $("ds-model").replaceChildren(
      ...ds.models.map((m) => el("option", { value: m.name, text: m.name + (m.builtin ? " (built-in)" : "") }))
    );
    onModelChange();
  }

  async function loadMethods() {
    const body = await L.apiJson("/v1/methods");
    ds.methods = body.methods.filter((m) => m.kind === "dataset");
    $("ds-method").replaceChildren(
      ...ds.methods.map((m) => el("option", { value: m.name, text: m.name }))
    );
    onMethodChange();
  }

  const currentModel = () => ds.models.find((m) => m.name === $("ds-model").value) || null;
  const currentMethod = () => ds.methods.find((m) => m.name === $("ds-method").value) || null;

  function onModelChange() {
    const m = currentModel();
    fillLayers();
    if (m && !ds.layers[layerKey(m)]) {
      L.layersOf(m)
        .then((info) => {
          ds.layers[layerKey(m)] = info;
          if (currentModel() === m) {
            fillLayers();
            if (ds.form) ds.form.refreshLayers();
          }
        })
        .catch((e) => L.showError(e));
    }
    updateRun();
  }

  function onMethodChange() {
    const method = currentMethod();
    $("ds-method-info").textContent = method ? method.description : "No dataset analyses are available.";
    const kinds = method && Array.isArray(method.objectives) && method.objectives.length
      ? method.objectives
      : ["class"];
    const sel = $("ds-objective-kind");
    const previous = sel.value;
    sel.replaceChildren(...kinds.map((k) => el("option", { value: k, text: OBJECTIVES[k] || k })));
    sel.value = kinds.includes(previous) ? previous : kinds[0];
    sel.disabled = kinds.length < 2;
    const schema = method && method.params_schema;
    const jsonBox = $("ds-params-json-field");
    if (method && ds.formMethod === method.name) {
      // the same analysis picked again: its params stay as they were filled in
    } else if (schema && typeof schema === "object") {
      ds.form = L.paramsForm(schema, $("ds-params"), { model: currentModel, method: currentMethod });
      jsonBox.hidden = true;
    } else {
      ds.form = null;
      $("ds-params").replaceChildren();
      jsonBox.hidden = !method;
    }
    ds.formMethod = method ? method.name : null;
    onObjectiveKind();
    updateRun();
  }

  function onObjectiveKind() {
    const kind = $("ds-objective-kind").value || "class";
    $("ds-layer-field").hidden = kind === "class";
    $("ds-channel-field").hidden = !["channel", "neuron"].includes(kind);
    $("ds-y-field").hidden = kind !== "neuron";
    $("ds-x-field").hidden = kind !== "neuron";
    $("ds-target-field").hidden = kind !== "class";
    fillLayers();
  }

  const layerKey = (m) => m.name + "@" + m.version;

  function fillLayers() {
    const select = $("ds-layer");
    const m = currentModel();
    const info = m ? ds.layers[layerKey(m)] : null;
    const previous = select.value;
    if (!info) {
      select.replaceChildren(el("option", { value: "", text: "(loading the model's layers…)" }));
      select.dataset.layers = "pending";
      return;
    }
    const neuron = $("ds-objective-kind").value === "neuron";
    const layers = info.layers.filter((l) => !neuron || (l.spatial && (l.shape || []).length === 4));
    select.replaceChildren(...layers.map((l) => el("option", { value: l.name, text: L.layerText(l) })));
    const names = layers.map((l) => l.name);
    select.value = names.includes(previous)
      ? previous
      : names.includes(info.defaultLayer)
        ? info.defaultLayer
        : names[names.length - 1] || "";
    select.dataset.layers = String(layers.length);
  }

  function updateRun() {
    $("ds-run").disabled = !(currentModel() && currentMethod() && $("ds-dataset").value);
  }

  // ---------------------------------------------------------------- analysis: the request

  function whole(id, what, required) {
    const raw = $(id).value.trim();
    if (raw === "") {
      if (required) throw new L.ApiError(0, "invalid_objective", `Enter the ${what}.`);
      return undefined;
    }
    if (!/^\d+$/.test(raw)) {
      throw new L.ApiError(0, "invalid_objective", `The ${what} is a whole number (0, 1, 2, …), not ${raw}.`);
    }
    return Number(raw);
  }

  /** {objective} for the request, or {} (the method's default objective). */
  function objectiveValue() {
    const kind = $("ds-objective-kind").value || "class";
    if (kind === "class") {
      const raw = $("ds-target").value.trim();
      if (!raw) return {};
      return { objective: { kind: "class", target: /^\d+$/.test(raw) ? Number(raw) : raw } };
    }
    const layer = $("ds-layer").value;
    if (!layer) throw new L.ApiError(0, "invalid_objective", "Pick a layer for the objective.");
    const o = { kind, layer };
    if (kind === "channel" || kind === "neuron") o.channel = whole("ds-channel", "channel", true);
    if (kind === "neuron") {
      const y = whole("ds-y", "neuron's y", false);
      const x = whole("ds-x", "neuron's x", false);
      if (y !== undefined) o.y = y;
      if (x !== undefined) o.x = x;
    }
    return { objective: o };
  }

  function paramsValue() {
    if (ds.form) return ds.form.get();
    const raw = $("ds-params-json").value.trim() || "{}";
    let v;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new L.ApiError(0, "invalid_params", "The params are not valid JSON: " + e.message);
    }
    if (!v || typeof v !== "object" || Array.isArray(v)) {
      throw new L.ApiError(0, "invalid_params", "The params are a JSON object, e.g. {\"k\": 16}.");
    }
    return v;
  }

  async function run() {
    L.clearError();
    const m = currentModel();
    const method = currentMethod();
    const dataset = $("ds-dataset").value;
    if (!m || !method || !dataset) return;
    const body = {
      model: m.name,
      method: method.name,
      dataset,
      params: paramsValue(),
      outputs: [],
      ...objectiveValue(),
    };
    const token = ++ds.token;
    clearResult();
    $("ds-run").disabled = true;
    try {
      const response = await L.api("/v1/explanations", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (token !== ds.token) return;
      if (response.status === 200) {
        showJob({ id: answer.job, state: "succeeded", progress: 1 });
        showResult(L.readResult(answer, { cached: true, noInput: true }));
      } else {
        await follow(answer, token);
      }
    } catch (e) {
      if (token === ds.token && ds.job === null) $("ds-job").hidden = true;
      throw e;
    } finally {
      if (token === ds.token) updateRun();
    }
  }

  function showJob(st) {
    ds.job = st.id;
    $("ds-job").hidden = false;
    const s = $("ds-job-state");
    s.textContent = st.state;
    s.dataset.state = st.state;
    const pct = Math.round((st.state === "succeeded" ? 1 : st.progress || 0) * 100);
    $("ds-job-bar").style.width = pct + "%";
    $("ds-job-bar").parentElement.setAttribute("aria-valuenow", String(pct));
    $("ds-job-percent").textContent = pct + "%";
    $("ds-job").dataset.job = st.id || "";
    $("ds-cancel").disabled = !st.id || ["succeeded", "failed", "cancelled"].includes(st.state);
  }

  async function follow(st, token) {
    for (;;) {
      if (token !== ds.token) return;
      showJob(st);
      if (st.state === "succeeded") {
        const body = await L.apiJson(`/v1/jobs/${encodeURIComponent(st.id)}/result?format=json`);
        if (token !== ds.token) return;
        showResult(L.readResult(body, { cached: false, noInput: true }));
        return;
      }
      if (st.state === "failed") {
        const err = st.error || { code: "job_failed", message: "The job failed." };
        throw new L.ApiError(422, err.code, err.message, err.details);
      }
      if (st.state === "cancelled") return;
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (token !== ds.token) return;
      st = await L.apiJson(`/v1/jobs/${encodeURIComponent(st.id)}`);
    }
  }

  async function cancel() {
    if (!ds.job) return;
    L.clearError();
    const st = await L.apiJson(`/v1/jobs/${encodeURIComponent(ds.job)}`, { method: "DELETE" });
    ds.token++;
    showJob(st);
    updateRun();
  }

  // ---------------------------------------------------------------- analysis: the result

  function clearResult() {
    ds.job = null;
    $("ds-result-head").hidden = true;
    $("ds-cards").replaceChildren();
    delete $("ds-result").dataset.job;
    delete $("ds-result").dataset.method;
  }

  function extrasText(extras) {
    const skip = new Set(["dataset", "dataset_version"]);
    return Object.entries(extras || {})
      .filter(([k, v]) => !skip.has(k) && (typeof v === "number" || typeof v === "string"))
      .slice(0, 8)
      .map(([k, v]) => `${k} ${typeof v === "number" ? L.fmtNumber(v) : v}`)
      .join(" · ");
  }

  function showResult(r) {
    const extras = r.extras || {};
    const t = r.timings || {};
    const timing = [
      typeof t.compute_ms === "number" ? `compute ${L.fmtDuration(t.compute_ms)}` : "",
      typeof r.model_calls === "number" ? `${r.model_calls} model calls` : "",
      r.cached ? "cached" : "",
    ].filter(Boolean).join(" · ");
    const head = $("ds-result-head");
    head.replaceChildren(
      el(
        "div",
        { class: "pane-title" },
        el("strong", { class: "pane-method", text: r.method }),
        el("span", { class: "pane-target", text: `${extras.dataset || $("ds-dataset").value} · ${r.model}` })
      ),
      el("div", { class: "pane-scores", text: extrasText(extras) }),
      el("div", { class: "timings", text: timing })
    );
    head.hidden = false;
    const cards = L.resultCards(r);
    $("ds-cards").replaceChildren(...cards.map((c) => c.node));
    if (!cards.length) $("ds-cards").append(el("p", { class: "hint", text: "This result has no artifacts." }));
    $("ds-result").dataset.job = r.job;
    $("ds-result").dataset.method = r.method;
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    window.addEventListener("hashchange", route);
    $("ds-upload").addEventListener("click", L.guarded(upload));
    $("ds-model").addEventListener("change", onModelChange);
    $("ds-method").addEventListener("change", onMethodChange);
    $("ds-dataset").addEventListener("change", () => {
      showDetail($("ds-dataset").value);
      updateRun();
    });
    $("ds-objective-kind").addEventListener("change", onObjectiveKind);
    $("ds-run").addEventListener("click", L.guarded(run));
    $("ds-cancel").addEventListener("click", L.guarded(cancel));
    route();
  }

  init();
})();
