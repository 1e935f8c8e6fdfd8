/* dataset_predictions' confusion matrix: its "confusion" table (a row per true class, a
 * column "pred:<label>" per predicted class, counts) drawn as a heat-coloured matrix with the
 * counts in it (the diagonal in orange by the share of the true class's images, its recall;
 * confusions in purple by their count, the largest darkest), and its "cells" table (true, predicted, labels, count, the images' ids) as the
 * list of confusions, largest first. Clicking a cell of either shows the thumbnails of its
 * images (GET /v1/datasets/{dataset}/images: ids -> indices, then each image at 64 px, of
 * the dataset version the analysis ran on). Any other table goes to the renderer before. */
"use strict";

(function () {
  const L = window.Lantern;
  const el = L.el;
  const baseTable = L.RENDERERS.table || L.renderGeneric;
  const THUMBS = 48; // thumbnails shown per cell (the JSON download lists every id)
  const THUMB_PX = 64;

  function sibling(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name) || null;
  }

  function hasJson(a) {
    return Boolean(a && a.links && a.links.json);
  }

  function isConfusion(a, ctx) {
    return a && a.type === "table" && hasJson(a) &&
      ((a.name === "confusion" && hasJson(sibling(ctx, "cells"))) ||
       (a.name === "cells" && hasJson(sibling(ctx, "confusion"))));
  }

  const ORANGES = [[255, 255, 255], [253, 208, 162], [241, 105, 19], [127, 39, 4]];
  const PURPLES = [[255, 255, 255], [218, 218, 235], [128, 125, 186], [63, 0, 125]];

  /** White to deep orange (or purple: errors), by t in [0, 1]. */
  function heat(t, stops) {
    stops = stops || ORANGES;
    const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  /** The cells table as a map "true,predicted" -> {true, predicted, labels, count, ids}. */
  function cellMap(body) {
    const data = (body && body.data) || body || {};
    const cols = data.columns || [];
    const at = (name) => cols.indexOf(name);
    const out = new Map();
    for (const row of data.rows || []) {
      const cell = {
        t: Number(row[at("true")]),
        p: Number(row[at("predicted")]),
        trueLabel: String(row[at("true_label")]),
        predLabel: String(row[at("predicted_label")]),
        count: Number(row[at("count")]),
        ids: Array.isArray(row[at("ids")]) ? row[at("ids")] : [],
      };
      out.set(cell.t + "," + cell.p, cell);
    }
    return out;
  }

  /** A panel that shows a cell's images when asked: {node, show(cell)}. */
  function thumbPanel(ctx) {
    const extras = (ctx.result && ctx.result.extras) || {};
    const dataset = extras.dataset;
    const version = extras.dataset_version;
    const node = el("div", { class: "cell-images", "aria-live": "polite", hidden: true });
    let token = 0;
    const show = (cell) => {
      const t = ++token;
      node.hidden = false;
      node.dataset.cell = cell.t + "," + cell.p;
      delete node.dataset.loaded;
      const title = el("p", {
        class: "cell-images-title",
        text: `true ${cell.trueLabel} → predicted ${cell.predLabel}: ${cell.count} image${cell.count === 1 ? "" : "s"}` +
          (cell.count > THUMBS ? ` (the first ${THUMBS} shown)` : ""),
      });
      const grid = el("div", { class: "cell-thumbs" });
      node.replaceChildren(title, grid);
      if (!dataset) {
        grid.append(el("p", { class: "hint", text: "The result names no dataset to show images of." }));
        return;
      }
      const ids = cell.ids.slice(0, THUMBS);
      if (!ids.length) {
        grid.append(el("p", { class: "hint", text: "No images in this cell." }));
        node.dataset.loaded = "0";
        return;
      }
      L.datasetImages(dataset, ids, version)
        .then((images) => {
          if (t !== token) return;
          grid.replaceChildren(
            ...images.map((img) =>
              el(
                "figure",
                { class: "cell-thumb", title: `${img.id} (image ${img.index}, label ${img.label})` },
                el("img", {
                  src: L.datasetImageUrl(dataset, img.index, { size: THUMB_PX, version }),
                  alt: `${img.id}: true ${cell.trueLabel}, predicted ${cell.predLabel}`,
                  width: THUMB_PX,
                  height: THUMB_PX,
                  "data-index": img.index,
                }),
                el("figcaption", { text: img.id })
              )
            )
          );
          node.dataset.loaded = String(images.length);
        })
        .catch((e) => {
          if (t !== token) return;
          grid.replaceChildren(el("p", { class: "card-note error-note", text: `The images could not be listed: ${e.message || e}` }));
          L.showError(e);
        });
    };
    return { node, show };
  }

  function clickable(node, fn) {
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    node.addEventListener("click", fn);
    node.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        fn();
      }
    });
  }

  function renderMatrix(a, ctx) {
    const frame = L.cardFrame(a, true);
    const cellsArtifact = sibling(ctx, "cells");
    const panel = thumbPanel(ctx);
    frame.node.setAttribute("aria-busy", "true");
    Promise.all([L.artifactData(a), L.artifactData(cellsArtifact)])
      .then(([body, cellsBody]) => {
        const data = (body && body.data) || body || {};
        const labels = (data.columns || []).map((c) => String(c).replace(/^pred:/, ""));
        const rows = (data.rows || []).map((r) => r.map(Number));
        const cells = cellMap(cellsBody);
        const totals = rows.map((r) => r.reduce((x, y) => x + y, 0));
        const all = totals.reduce((x, y) => x + y, 0);
        const correct = rows.reduce((s, r, i) => s + (r[i] || 0), 0);
        // classes no image of which is true or predicted are left out
        const used = labels.map((_, i) => totals[i] > 0 || rows.some((r) => r[i] > 0));
        const keep = labels.map((_, i) => i).filter((i) => used[i]);
        // errors on their own scale (a few images among hundreds would be white on the
        // share's): the largest confusion is the darkest, any is visibly tinted
        let maxOff = 0;
        rows.forEach((r, i) => r.forEach((n, j) => {
          if (i !== j && n > maxOff) maxOff = n;
        }));
        const head = el(
          "tr",
          {},
          el("th", { class: "corner", scope: "col", text: "true ↓ / predicted →" }),
          ...keep.map((j) => el("th", { scope: "col", class: "pred", text: labels[j] }))
        );
        const body2 = keep.map((i) =>
          el(
            "tr",
            {},
            el("th", { scope: "row", class: "truth", text: labels[i] }),
            ...keep.map((j) => {
              const n = rows[i][j] || 0;
              const share = totals[i] ? n / totals[i] : 0;
              const t = i === j ? share : n ? 0.3 + (0.7 * n) / maxOff : 0;
              const td = el("td", {
                class: "cm-cell" + (i === j ? " diag" : " off") + (n ? "" : " zero"),
                "data-true": i,
                "data-pred": j,
                "data-count": n,
                style: `background:${heat(t, i === j ? ORANGES : PURPLES)};color:${t > 0.5 ? "#fff" : "#1d2330"}`,
                title: `true ${labels[i]}, predicted ${labels[j]}: ${n} of ${totals[i]} (${(share * 100).toFixed(1)}%)`,
                text: n ? String(n) : "",
              });
              if (n) {
                clickable(td, () => {
                  for (const x of table.querySelectorAll(".cm-cell.selected")) x.classList.remove("selected");
                  td.classList.add("selected");
                  panel.show(cells.get(i + "," + j) || {
                    t: i, p: j, trueLabel: labels[i], predLabel: labels[j], count: n, ids: [],
                  });
                });
              }
              return td;
            }),
            el("td", { class: "cm-total num", text: String(totals[i]) })
          )
        );
        const table = el(
          "table",
          { class: "confusion-matrix", "aria-label": "Confusion matrix: rows are the true classes, columns the predicted ones" },
          el("thead", {}, head),
          el("tbody", {}, ...body2)
        );
        frame.title.textContent = `${a.name} · accuracy ${all ? ((correct / all) * 100).toFixed(1) : "—"}%`;
        frame.body.replaceChildren(
          el("div", { class: "cm-scroll" }, table),
          el("p", { class: "hint", text: "Orange: the share of the true class's images predicted right; purple: confusions, the largest darkest. Click a cell for its images." }),
          panel.node
        );
        frame.node.dataset.classes = String(keep.length);
      })
      .catch((e) => {
        frame.body.append(el("p", { class: "card-note error-note", text: `Could not load ${a.name}: ${e.message || e}` }));
        L.showError(e);
      })
      .finally(() => frame.node.removeAttribute("aria-busy"));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  function renderCells(a, ctx) {
    const frame = L.cardFrame(a, false);
    const panel = thumbPanel(ctx);
    frame.node.setAttribute("aria-busy", "true");
    L.artifactData(a)
      .then((body) => {
        const cells = Array.from(cellMap(body).values());
        const wrong = cells.filter((c) => c.t !== c.p).sort((x, y) => y.count - x.count || x.t - y.t);
        const list = el("ol", { class: "confusions" });
        for (const c of wrong.slice(0, 20)) {
          const item = el(
            "li",
            { class: "confusion", "data-true": c.t, "data-pred": c.p, "data-count": c.count },
            el("span", { class: "pair", text: `${c.trueLabel} → ${c.predLabel}` }),
            el("span", { class: "num", text: String(c.count) })
          );
          clickable(item, () => {
            for (const x of list.querySelectorAll(".selected")) x.classList.remove("selected");
            item.classList.add("selected");
            panel.show(c);
          });
          list.append(item);
        }
        const parts = [
          el("p", {
            class: "hint",
            text: wrong.length
              ? `${wrong.length} confusions (true → predicted), largest first; click one for its images.`
              : "No image is misclassified.",
          }),
        ];
        if (wrong.length) parts.push(list);
        if (wrong.length > 20) parts.push(el("p", { class: "hint", text: `${wrong.length - 20} more in the JSON download.` }));
        parts.push(panel.node);
        frame.body.replaceChildren(...parts);
      })
      .catch((e) => {
        frame.body.append(el("p", { class: "card-note error-note", text: `Could not load ${a.name}: ${e.message || e}` }));
        L.showError(e);
      })
      .finally(() => frame.node.removeAttribute("aria-busy"));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  L.registerRenderer("table", (a, ctx) => {
    if (!isConfusion(a, ctx)) return baseTable(a, ctx);
    return a.name === "confusion" ? renderMatrix(a, ctx) : renderCells(a, ctx);
  });
})();
