/* Tabular models: an input editor (one field per feature of the manifest: a number, a
 * category list, a checkbox; prefilled with the training means and most frequent
 * categories) and feature weights ("feature_weights" artifacts) drawn as a signed bar
 * chart sorted by |weight|, each bar labelled with the feature and the row's value (or the
 * condition LIME weighed). A feature attribution (axes ["feature"]) is listed as a table;
 * other attributions go to the renderer this one wraps. */
"use strict";

(function () {
  const L = window.Lantern;
  const prev = L.RENDERERS.attribution;
  const POS = "#1f77b4"; // raises the target's score
  const NEG = "#d62728"; // lowers it
  const MAX_BARS = 30;

  function label(f) {
    if (f.condition) return f.condition;
    return f.value !== null && f.value !== undefined && f.value !== "" ? `${f.name} = ${f.value}` : f.name;
  }

  function clip(text, n) {
    return text.length <= n ? text : text.slice(0, n - 1) + "…";
  }

  /** The bars as an SVG: zero line, one bar per feature (the rest summed in one). */
  function barChart(data) {
    const feats = data.features || [];
    const order = Array.isArray(data.order) ? data.order : feats.map((_, i) => i);
    const rows = order.slice(0, MAX_BARS).map((i) => ({ text: label(feats[i]), w: Number(feats[i].weight), i }));
    const rest = order.slice(MAX_BARS);
    if (rest.length) {
      rows.push({ text: `${rest.length} other features`, w: rest.reduce((s, i) => s + Number(feats[i].weight), 0), i: -1 });
    }
    const ROW = 22, LABEL = 250, BAR = 320, VALUE = 80, TOP = 8;
    const width = LABEL + BAR + VALUE;
    const height = TOP + ROW * Math.max(rows.length, 1) + 8;
    const lo = Math.min(0, ...rows.map((r) => r.w));
    const hi = Math.max(0, ...rows.map((r) => r.w));
    const scale = BAR / (hi > lo ? hi - lo : 1);
    const zero = LABEL + -lo * scale;
    const svg = L.svgEl("svg", {
      class: "feature-bars",
      width: String(width),
      height: String(height),
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": "Feature weights",
      "font-family": "sans-serif",
      "font-size": "12",
    });
    rows.forEach((r, k) => {
      const y = TOP + k * ROW;
      const x1 = zero + r.w * scale;
      const bar = L.svgEl("rect", {
        class: "feature-bar",
        "data-feature": r.i >= 0 ? feats[r.i].name : "",
        "data-weight": String(r.w),
        x: String(Math.min(zero, x1)),
        y: String(y + 3),
        width: String(Math.max(Math.abs(x1 - zero), 0.5)),
        height: String(ROW - 6),
        fill: r.w >= 0 ? POS : NEG,
      });
      const tip = L.svgEl("title", {});
      tip.textContent = `${r.text}: ${r.w >= 0 ? "+" : ""}${L.fmtNumber(r.w)}`;
      bar.append(tip);
      const name = L.svgEl("text", { x: "4", y: String(y + 15) });
      name.textContent = clip(r.text, 38);
      const value = L.svgEl("text", { x: String(LABEL + BAR + 6), y: String(y + 15) });
      value.textContent = (r.w >= 0 ? "+" : "") + L.fmtNumber(r.w);
      svg.append(bar, name, value);
    });
    svg.append(
      L.svgEl("line", {
        x1: String(zero), y1: String(TOP - 2), x2: String(zero), y2: String(height - 4), stroke: "#444",
      })
    );
    return svg;
  }

  function renderFeatureWeights(a, ctx) {
    const frame = L.cardFrame(a, true);
    frame.node.setAttribute("aria-busy", "true");
    L.apiJson(a.links.json)
      .then((body) => {
        const data = (body && body.data) || {};
        const facts = [];
        if (typeof data.f_x === "number") facts.push(["score on the row", L.fmtNumber(data.f_x), "num"]);
        if (typeof data.base === "number") facts.push(["base", L.fmtNumber(data.base), "num"]);
        frame.body.append(
          barChart(data),
          L.el("p", { class: "hint", text: "Blue raises the target's score, red lowers it; sorted by |weight|." })
        );
        if (facts.length) {
          const tbody = L.el("tbody");
          L.kvRows(tbody, facts);
          frame.body.append(L.el("table", { class: "table kv" }, tbody));
        }
        frame.node.dataset.state = "drawn";
      })
      .catch((e) => L.showError(e))
      .finally(() => frame.node.removeAttribute("aria-busy"));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  function isFeatures(a) {
    return Array.isArray(a.axes) && a.axes.length === 1 && a.axes[0] === "feature";
  }

  /** A feature attribution: its values as a table, largest |value| first. */
  function renderFeatureAttribution(a, ctx) {
    const frame = L.cardFrame(a, false);
    const names = (a.meta && a.meta.feature_names) || [];
    L.apiJson(a.links.json)
      .then((body) => {
        const values = ((body && body.data && body.data.values) || []).map(Number);
        const order = values.map((_, i) => i).sort((x, y) => Math.abs(values[y]) - Math.abs(values[x]));
        const tbody = L.el("tbody");
        for (const i of order.slice(0, 12)) {
          tbody.append(L.el("tr", {}, L.el("td", { text: names[i] || String(i) }), L.el("td", { class: "num", text: L.fmtNumber(values[i]) })));
        }
        frame.body.append(
          L.el("table", { class: "table" },
            L.el("thead", {}, L.el("tr", {}, L.el("th", { text: "feature" }), L.el("th", { text: "value" }))),
            tbody)
        );
        frame.node.dataset.state = "drawn";
      })
      .catch((e) => L.showError(e));
    // a heatmap or overlay needs two axes: only the numbers download
    const links = { json: a.links.json, npy: a.links.npy };
    const dl = L.withDownloads(frame, { ...a, links }, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  L.registerRenderer("feature_weights", renderFeatureWeights);
  L.registerRenderer("attribution", (a, ctx) => (isFeatures(a) ? renderFeatureAttribution(a, ctx) : prev(a, ctx)));

  /** A form field per feature, prefilled from the training statistics. */
  L.registerInputEditor("tabular", (model, onChange) => {
    const m = (model && model.manifest) || {};
    const feats = m.features || [];
    const stats = (m.statistics && m.statistics.features) || [];
    const fields = [];
    const tbody = L.el("tbody");
    feats.forEach((f, j) => {
      const s = stats[j] || {};
      const id = `tab-${j}`;
      let input;
      if (f.type === "categorical") {
        input = L.el("select", { id, "data-feature": f.name });
        (f.values || []).forEach((v, c) => input.append(L.el("option", { value: v, text: v, ...(c === s.mean ? { selected: "" } : {}) })));
      } else if (f.type === "boolean") {
        input = L.el("input", { id, type: "checkbox", "data-feature": f.name });
        input.checked = Array.isArray(s.frequencies) && s.frequencies[1] > s.frequencies[0];
      } else {
        input = L.el("input", { id, type: "number", step: "any", "data-feature": f.name, style: "width:9em;" });
        if (typeof s.mean === "number") input.value = String(Number(s.mean.toPrecision(4)));
      }
      input.addEventListener("input", () => onChange());
      input.addEventListener("change", () => onChange());
      fields.push([f, input]);
      tbody.append(L.el("tr", {}, L.el("td", {}, L.el("label", { for: id, text: f.name })), L.el("td", {}, input)));
    });
    const node = L.el(
      "div",
      { class: "tabular-editor", style: "max-height:22em;overflow:auto;" },
      L.el("table", { class: "table kv" }, tbody),
      L.el("p", { class: "hint", text: "Prefilled with the training means and most frequent categories." })
    );
    return {
      node,
      title: "Row",
      value() {
        const row = {};
        for (const [f, input] of fields) {
          if (f.type === "categorical") row[f.name] = input.value;
          else if (f.type === "boolean") row[f.name] = input.checked;
          else if (input.value === "") {
            if (!f.nullable) return null;
            row[f.name] = null;
          } else row[f.name] = Number(input.value);
        }
        return { modality: "tabular", row };
      },
    };
  });
})();
