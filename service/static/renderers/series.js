/* Time-series models: the series plot (a "series" artifact: each channel's line with its
 * attribution as a heat band under it — red raises the target's score, blue lowers it),
 * attributions with a "time" axis drawn as a band with their curve (other attributions go
 * to the renderer this one wraps), and an input editor: paste a JSON array (channels ×
 * time, or one flat list for one channel) or pick an example series of the built-in test
 * set (static/samples/gunpoint.json, for the model it names). */
"use strict";

(function () {
  const L = window.Lantern;
  const prev = L.RENDERERS.attribution;
  const POS = [214, 39, 40];
  const NEG = [31, 119, 180];
  const W = 720;
  const PANEL = 90;
  const BAND = 16;
  const GAP = 6;

  function colour(v, max) {
    const base = v >= 0 ? POS : NEG;
    const a = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
    const c = base.map((b) => Math.round(255 + (b - 255) * a));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  function rows(values) {
    if (!Array.isArray(values)) return [];
    return Array.isArray(values[0]) ? values.map((r) => r.map(Number)) : [values.map(Number)];
  }

  function linePath(v, y0, height) {
    const lo = Math.min(...v);
    const hi = Math.max(...v);
    const span = hi > lo ? hi - lo : 1;
    const n = v.length;
    return v
      .map((x, i) => {
        const px = (i * (W - 1)) / Math.max(n - 1, 1);
        const py = y0 + height - 1 - ((x - lo) / span) * (height - 1);
        return `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`;
      })
      .join(" ");
  }

  function band(svg, row, y, max, cls) {
    const n = row.length;
    const g = L.svgEl("g", { class: cls, "data-y": String(y) });
    row.forEach((v, i) => {
      const x0 = (i * W) / n;
      g.append(
        L.svgEl("rect", {
          x: x0.toFixed(2),
          y: String(y),
          width: (W / n + 0.6).toFixed(2),
          height: String(BAND),
          fill: colour(v, max),
          "data-step": String(i),
          "data-weight": String(v),
        })
      );
    });
    svg.append(g);
  }

  /** The plot: series (C × T) lines, attribution bands (C × T, or T for all channels). */
  function plot(series, attribution, names) {
    const attr = rows(attribution);
    const perChannel = attr.length === series.length && Array.isArray(attribution[0]);
    const bands = perChannel ? series.length : 1;
    const height = series.length * (PANEL + GAP) + bands * (BAND + GAP);
    const svg = L.svgEl("svg", {
      class: "series-plot",
      viewBox: `0 0 ${W} ${height}`,
      width: "100%",
      role: "img",
      "aria-label": "Series with its attribution as a heat band",
    });
    const max = Math.max(0, ...attr.flat().map((v) => Math.abs(v)));
    let y = 0;
    series.forEach((v, c) => {
      svg.append(
        L.svgEl("path", {
          class: "series-line",
          d: linePath(v, y, PANEL),
          fill: "none",
          stroke: "#1f2937",
          "stroke-width": "1.5",
        }),
        L.svgEl("text", { x: "4", y: String(y + 12), "font-size": "11", fill: "#6b7280", text: names[c] || `ch${c}` })
      );
      y += PANEL + GAP;
      if (perChannel) {
        band(svg, attr[c], y, max, "series-band");
        y += BAND + GAP;
      }
    });
    if (!perChannel && attr.length) band(svg, attr[0], y, max, "series-band");
    return svg;
  }

  function peakText(attr) {
    const flat = rows(attr);
    if (!flat.length) return "";
    const n = flat[0].length;
    let best = 0;
    let bestV = -1;
    for (let t = 0; t < n; t++) {
      const v = Math.max(...flat.map((r) => Math.abs(r[t])));
      if (v > bestV) {
        bestV = v;
        best = t;
      }
    }
    return `Largest |attribution| at step ${best} (${L.fmtNumber(bestV)}). Red raises the target's score, blue lowers it.`;
  }

  function renderSeries(a, ctx) {
    const frame = L.cardFrame(a, true);
    frame.node.classList.add("card-series-plot");
    const names = (a.meta && a.meta.channel_names) || [];
    if (a.links && a.links.json) {
      L.apiJson(a.links.json)
        .then((body) => {
          const d = (body && body.data) || {};
          const series = rows(d.series);
          frame.body.append(plot(series, d.attribution, names), L.el("p", { class: "hint series-peak", text: peakText(d.attribution) }));
          frame.node.dataset.state = "drawn";
        })
        .catch((e) => L.showError(e));
    }
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  function isTime(a) {
    return Array.isArray(a.axes) && a.axes.length > 0 && a.axes[a.axes.length - 1] === "time";
  }

  /** A time attribution alone: its curve per channel with its band under it. */
  function renderTimeAttribution(a, ctx) {
    const frame = L.cardFrame(a, true);
    frame.node.classList.add("card-series-attribution");
    if (a.links && a.links.json) {
      L.apiJson(a.links.json)
        .then((body) => {
          const values = (body && body.data && body.data.values) || [];
          const names = (a.meta && a.meta.feature_names) || [];
          frame.body.append(plot(rows(values), values, names), L.el("p", { class: "hint", text: peakText(values) }));
          frame.node.dataset.state = "drawn";
        })
        .catch((e) => L.showError(e));
    }
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  L.registerRenderer("series", renderSeries);
  L.registerRenderer("attribution", (a, ctx) => (isTime(a) ? renderTimeAttribution(a, ctx) : prev(a, ctx)));

  // ---- the input editor

  function parseSeries(text, manifest) {
    let v;
    try {
      v = JSON.parse(text);
    } catch (e) {
      return { error: "Not JSON: paste an array of numbers, or one array per channel." };
    }
    if (v && !Array.isArray(v) && Array.isArray(v.values)) v = v.values;
    if (!Array.isArray(v) || !v.length) return { error: "Paste a non-empty array." };
    const rs = Array.isArray(v[0]) ? v : [v];
    if (rs.some((r) => !Array.isArray(r) || r.some((x) => typeof x !== "number" || !isFinite(x)))) {
      return { error: "Numbers only (no strings, null or NaN)." };
    }
    const c = (manifest && manifest.channels) || 1;
    const t = manifest && manifest.length;
    if (rs.length !== c) return { error: `${rs.length} channel(s); the model takes ${c}.` };
    if (t && manifest.length_mode !== "max" && rs.some((r) => r.length !== t)) {
      return { error: `${rs[0].length} steps; the model takes ${t}.` };
    }
    return { values: Array.isArray(v[0]) ? rs : v };
  }

  L.registerInputEditor("time_series", (model, onChange) => {
    const manifest = (model && model.manifest) || {};
    const area = L.el("textarea", {
      id: "series-input",
      rows: "5",
      placeholder: `Paste a JSON array: ${manifest.channels || 1} × ${manifest.length || "T"} numbers (channels × time)`,
      "aria-label": "The series to explain (JSON)",
      style: "width:100%;box-sizing:border-box;font-family:monospace;font-size:12px;",
    });
    const status = L.el("p", { class: "hint", id: "series-status", text: `${manifest.channels || 1} channel(s) × ${manifest.length || "?"} steps.` });
    const picker = L.el("select", { id: "series-example", "aria-label": "An example series" }, L.el("option", { value: "", text: "Example series…" }));
    const preview = L.el("div", { class: "series-preview" });
    let examples = [];
    let parsed = null;

    function refresh() {
      const text = area.value.trim();
      parsed = null;
      preview.replaceChildren();
      if (!text) {
        status.textContent = `${manifest.channels || 1} channel(s) × ${manifest.length || "?"} steps.`;
      } else {
        const r = parseSeries(text, manifest);
        if (r.error) {
          status.textContent = r.error;
          status.dataset.state = "error";
        } else {
          parsed = r.values;
          const rs = rows(parsed);
          status.textContent = `${rs.length} channel(s) × ${rs[0].length} steps.`;
          status.dataset.state = "ok";
          preview.append(plot(rs, [], manifest.channel_names || []));
        }
      }
      onChange();
    }

    area.addEventListener("input", refresh);
    picker.addEventListener("change", () => {
      const ex = examples[Number(picker.value)];
      if (ex) {
        area.value = JSON.stringify(ex.values);
        refresh();
      }
    });
    L.apiJson("/static/samples/gunpoint.json")
      .then((body) => {
        if (!body || body.model !== (model && model.name)) {
          picker.hidden = true;
          return;
        }
        examples = body.series || [];
        examples.forEach((ex, i) => picker.append(L.el("option", { value: String(i), text: ex.name })));
      })
      .catch(() => {
        picker.hidden = true;
      });
    const node = L.el("div", { class: "series-editor" }, picker, area, status, preview);
    return {
      node,
      title: "Series",
      value() {
        return parsed ? { modality: "time_series", values: parsed } : null;
      },
    };
  });
})();
