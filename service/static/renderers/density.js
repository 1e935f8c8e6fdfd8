/* Activation distributions (artifact type "distributions", method activation_distributions):
 * Summit's density bars — one row per channel, most different first, one band per input set
 * in the set's colour, one cell per bin whose opacity is the set's share of its images in
 * the bin over the row's largest share among the sets shown (the PNG's rule) — with a set
 * picker (checkboxes: which sets are drawn; opacities are recomputed over those), more rows
 * on demand, and the ranked differences between the two compared sets (the "differences"
 * table of the same result: AUROC, Cohen's d, BH q-value); a click on a ranked channel
 * marks its row in the bars. */
"use strict";

(function () {
  const L = window.Lantern;
  // engine/render/groups.py PALETTE: the PNG's set colours
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ffdd33", "#000080",
  ];
  const ROWS_STEP = 16;
  const CELL_W = 10;
  const BAND_H = 10;
  const LABEL_W = 120;
  const TOP_TABLE = 20;

  function artifactByName(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name);
  }

  const colour = (k) => PALETTE[k % PALETTE.length];

  /** Sets checked at first: all of up to four, else the two compared (or the first four). */
  function initialSets(data) {
    const n = data.sets.length;
    if (n <= 4) return data.sets.map((_, k) => k);
    if (Array.isArray(data.compared) && data.compared.length === 2) return data.compared.slice();
    return [0, 1, 2, 3];
  }

  function drawRows(svgHost, data, shown, rows, marked) {
    const counts = data.counts;
    const edges = data.edges;
    const sizes = data.sizes;
    const bins = counts.length ? counts[0][0].length : 0;
    const rowH = shown.length * BAND_H + 8;
    const width = LABEL_W + bins * CELL_W + 110;
    const height = rows.length * rowH + 4;
    const svg = L.svgEl("svg", {
      class: "density-svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `density bars of ${rows.length} channels for ${shown.map((k) => data.sets[k]).join(", ")}`,
      "font-family": "sans-serif",
      "font-size": "11",
    });
    rows.forEach((r, i) => {
      const y0 = i * rowH + 2;
      const share = shown.map((k) => counts[r][k].map((c) => (sizes[k] > 0 ? c / sizes[k] : 0)));
      const top = Math.max(0, ...share.flat());
      const g = L.svgEl("g", {
        class: "density-row" + (marked === r ? " marked" : ""),
        "data-row": String(r),
        "data-channel": String(data.channels[r]),
        "data-layer": data.layers[r],
      });
      g.append(
        L.svgEl("text", {
          x: 4,
          y: y0 + (shown.length * BAND_H) / 2 + 4,
          text: `${data.layers[r]} · ch ${data.channels[r]}`,
          "font-weight": marked === r ? "bold" : null,
        })
      );
      shown.forEach((k, j) => {
        const band = L.svgEl("g", { class: "density-band", "data-set": data.sets[k] });
        share[j].forEach((s, b) => {
          const lo = edges[r][b];
          const hi = edges[r][b + 1];
          const rect = L.svgEl(
            "rect",
            {
              x: LABEL_W + b * CELL_W,
              y: y0 + j * BAND_H,
              width: CELL_W,
              height: BAND_H - 1,
              fill: colour(k),
              "fill-opacity": top > 0 ? (s / top).toFixed(4) : 0,
            },
            L.svgEl("title", {
              text: `${data.sets[k]}: ${counts[r][k][b]} of ${sizes[k]} in [${L.fmtNumber(lo)}, ${L.fmtNumber(hi)})`,
            })
          );
          band.append(rect);
        });
        g.append(band);
      });
      g.append(
        L.svgEl("rect", {
          x: LABEL_W - 0.5,
          y: y0 - 0.5,
          width: bins * CELL_W + 1,
          height: shown.length * BAND_H,
          fill: "none",
          stroke: marked === r ? "#000" : "#ccc",
        })
      );
      g.append(
        L.svgEl("text", {
          x: LABEL_W + bins * CELL_W + 6,
          y: y0 + (shown.length * BAND_H) / 2 + 4,
          fill: "#444",
          text: `${L.fmtNumber(edges[r][0])} … ${L.fmtNumber(edges[r][bins])}`,
        })
      );
      svg.append(g);
    });
    svgHost.replaceChildren(svg);
  }

  function differencesTable(rows, onPick) {
    const head = ["#", "channel", "AUROC", "Cohen's d", "q (BH)"];
    return L.el(
      "table",
      {
        class: "table data-table density-differences",
        "aria-label": "channels ranked by difference",
        style: "width:auto;",
      },
      L.el("thead", {}, L.el("tr", {}, ...head.map((h) => L.el("th", { scope: "col", text: h })))),
      L.el(
        "tbody",
        {},
        ...rows.slice(0, TOP_TABLE).map((row) => {
          const [rank, layer, channel, auroc, d, , , , q] = row;
          const tr = L.el(
            "tr",
            { "data-layer": layer, "data-channel": String(channel), style: "cursor:pointer;" },
            L.el("td", { class: "num", text: String(rank) }),
            L.el("td", { text: `${layer} · ${channel}` }),
            L.el(
              "td",
              { class: "num" },
              L.el("span", {
                class: "wbar " + (auroc >= 0.5 ? "pos" : "neg"),
                style: `display:inline-block;height:0.7em;margin-right:4px;width:${Math.round(Math.abs(auroc - 0.5) * 120)}px`,
              }),
              auroc === null ? "—" : L.fmtNumber(auroc)
            ),
            L.el("td", { class: "num", text: d === null ? "—" : L.fmtNumber(d) }),
            L.el("td", { class: "num", text: q === null ? "—" : Number(q).toExponential(2) })
          );
          tr.addEventListener("click", () => onPick(layer, channel, tr));
          return tr;
        })
      )
    );
  }

  L.registerRenderer("distributions", (a, ctx) => {
    const links = a.links || {};
    if (!links.json) return L.renderGeneric(a, ctx);
    const frame = L.cardFrame(a, true);
    const picker = L.el("fieldset", { class: "density-sets", style: "border:0;padding:0;margin:0 0 6px;" },
      L.el("legend", { class: "hint", text: "Sets shown" }));
    const chart = L.el("div", { class: "density-chart", style: "overflow-x:auto;" });
    const more = L.el("button", { type: "button", class: "density-more", text: "More channels" });
    const note = L.el("p", { class: "hint density-note" });
    const side = L.el("div", { class: "density-side", style: "flex:1 1 360px;min-width:0;" });
    const bars = L.el("div", { class: "density-bars", style: "flex:0 1 auto;min-width:0;" }, picker, chart, more);
    frame.body.append(note, L.el("div", { style: "display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start;" }, bars, side));
    const view = { shown: [], limit: ROWS_STEP, marked: null, data: null };

    const redraw = () => {
      const data = view.data;
      const rows = data.order.slice(0, view.limit);
      drawRows(chart, data, view.shown, rows, view.marked);
      chart.dataset.sets = view.shown.map((k) => data.sets[k]).join("|");
      chart.dataset.rows = String(rows.length);
      more.hidden = rows.length >= data.order.length;
    };

    L.apiJson(links.json)
      .then((body) => {
        const data = body.data || body;
        view.data = data;
        view.shown = initialSets(data);
        const compared = (data.compared || []).map((k) => data.sets[k]);
        note.textContent =
          `${data.statistic} activation per image · ${data.order.length} channels · ` +
          (compared.length === 2 ? `ranked by how ${compared[0]} and ${compared[1]} differ` : "in layer order");
        data.sets.forEach((name, k) => {
          const box = L.el("input", { type: "checkbox", value: String(k), "data-set": name });
          box.checked = view.shown.includes(k);
          box.addEventListener("change", () => {
            const picked = [...picker.querySelectorAll("input[type=checkbox]")]
              .filter((x) => x.checked)
              .map((x) => Number(x.value));
            if (!picked.length) {
              box.checked = true; // at least one set stays shown
              return;
            }
            view.shown = picked;
            redraw();
          });
          picker.append(
            L.el(
              "label",
              { style: "margin-right:12px;white-space:nowrap;" },
              box,
              L.el("span", {
                class: "swatch",
                style: `display:inline-block;width:0.9em;height:0.9em;margin:0 4px;vertical-align:middle;background:${colour(k)}`,
              }),
              `${name} (${data.sizes[k]})`
            )
          );
        });
        more.addEventListener("click", () => {
          view.limit += ROWS_STEP;
          redraw();
        });
        redraw();
        const diff = artifactByName(ctx, "differences");
        if (diff && diff.links && diff.links.json && compared.length === 2) {
          return L.apiJson(diff.links.json).then((tb) => {
            const rows = ((tb.data || tb).rows || []);
            side.replaceChildren(
              L.el("p", { class: "hint", text: `Channels ranked by how ${compared[0]} and ${compared[1]} differ (AUROC 0.5: not at all)` }),
              differencesTable(rows, (layer, channel, tr) => {
                const r = data.layers.findIndex((ly, i) => ly === layer && data.channels[i] === channel);
                view.marked = r;
                const pos = data.order.indexOf(r);
                if (pos >= view.limit) view.limit = pos + 1;
                side.querySelectorAll("tr.selected").forEach((x) => x.classList.remove("selected"));
                tr.classList.add("selected");
                redraw();
              })
            );
          });
        }
        return null;
      })
      .catch((e) => L.showError(e));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });
})();
