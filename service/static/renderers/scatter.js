/* An embedding (artifact type "embedding", method embedding): the dataset's images as
 * points of a 2-D map (t-SNE or UMAP) in an SVG scatter, coloured by label, prediction or
 * correct / wrong (a select recolours in place; the key below counts each colour), the
 * caller's placed inputs as numbered diamonds. Hovering a point shows its image's
 * thumbnail (GET /v1/datasets/{dataset}/images/{index}?size=N, pinned to the map's
 * dataset version) with its label, the model's prediction and its id; hovering a placed
 * point lists its nearest dataset images, with thumbnails. The palette is
 * engine/render/scatter.py's. */
"use strict";

(function () {
  const L = window.Lantern;
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
  ];
  const UNKNOWN = "#bebebe";
  const CORRECT = "#2ca02c";
  const WRONG = "#d62728";
  const SIDE = 480;
  const PAD = 12;
  const THUMB = 64;

  function colourOf(k) {
    return k >= 0 && k < PALETTE.length ? PALETTE[k] : UNKNOWN;
  }

  /** Per point the index of its key entry; per entry its name and colour. */
  function keyOf(data, by) {
    const points = data.points || [];
    if (by === "correct") {
      return {
        names: ["correct", "wrong", "no label"],
        colours: [CORRECT, WRONG, UNKNOWN],
        of: points.map((p) => (p.correct === true ? 0 : p.correct === false ? 1 : 2)),
      };
    }
    const names = (by === "prediction" ? data.labels : data.classes || []).slice();
    const pos = new Map(names.map((n, i) => [n, i]));
    const field = by === "prediction" ? "prediction" : "label";
    let unlabelled = -1;
    const of = points.map((p) => {
      const v = p[field];
      if (v !== null && v !== undefined && pos.has(String(v))) return pos.get(String(v));
      if (unlabelled < 0) {
        unlabelled = names.length;
        names.push("unlabelled");
      }
      return unlabelled;
    });
    const colours = names.map((n, i) => (i === unlabelled ? UNKNOWN : colourOf(i)));
    return { names, colours, of };
  }

  function thumbUrl(data, index) {
    const q = new URLSearchParams({ size: String(THUMB) });
    if (data.dataset_version) q.set("version", data.dataset_version);
    return `/v1/datasets/${encodeURIComponent(data.dataset)}/images/${index}?` + q.toString();
  }

  function thumb(data, index, alt) {
    return L.el("img", {
      class: "scatter-thumb",
      src: thumbUrl(data, index),
      alt,
      width: String(THUMB),
      height: String(THUMB),
      style: "image-rendering:pixelated;border:1px solid #ccc;background:#fff",
    });
  }

  function project(data) {
    const all = (data.points || []).concat(data.placed || []);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const p of all) {
      x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
    }
    if (!all.length) { x0 = y0 = 0; x1 = y1 = 1; }
    const span = Math.max(x1 - x0, y1 - y0, 1e-12);
    const inner = SIDE - 2 * PAD;
    const ox = PAD + (inner - ((x1 - x0) / span) * inner) / 2;
    const oy = PAD + (inner - ((y1 - y0) / span) * inner) / 2;
    return (p) => [ox + ((p.x - x0) / span) * inner, SIDE - (oy + ((p.y - y0) / span) * inner)];
  }

  L.registerRenderer("embedding", (a, ctx) => {
    const frame = L.cardFrame(a, true);
    const meta = a.meta || {};
    const select = L.el(
      "select",
      { class: "scatter-colour", "aria-label": "Colour the points by" },
      ...["label", "prediction", "correct"].map((v) => L.el("option", { value: v, text: v }))
    );
    const controls = L.el("label", { class: "hint" }, "colour by ", select);
    const svg = L.svgEl("svg", {
      class: "scatter",
      width: String(SIDE),
      height: String(SIDE),
      viewBox: `0 0 ${SIDE} ${SIDE}`,
      role: "img",
      "aria-label": `${a.name}: ${meta.algorithm || "map"} of ${meta.layer || "a layer"} over ${meta.dataset || "a dataset"}`,
      style: "border:1px solid #ddd;background:#fff;max-width:100%;height:auto",
    });
    const key = L.el("ul", { class: "scatter-key", style: "list-style:none;padding:0;margin:.5em 0;display:flex;flex-wrap:wrap;gap:.25em 1em" });
    const hover = L.el("div", {
      class: "scatter-hover",
      "aria-live": "polite",
      style: "min-height:90px;display:flex;gap:.75em;align-items:flex-start;flex-wrap:wrap",
    }, L.el("p", { class: "hint", text: "Hover a point to see its image." }));
    const layout = L.el("div", { style: "display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start" },
      svg, L.el("div", { style: "min-width:200px;max-width:420px" }, controls, key, hover));
    frame.body.append(layout);

    fetchData(a)
      .then((data) => {
        const points = data.points || [];
        const placed = data.placed || [];
        const at = project(data);
        const r = points.length <= 2000 ? 3 : points.length <= 20000 ? 2 : 1;
        const circles = points.map((p, k) => {
          const [x, y] = at(p);
          return L.svgEl("circle", {
            class: "pt", cx: x.toFixed(1), cy: y.toFixed(1), r: String(r), "data-k": String(k),
            "data-index": String(p.index),
          });
        });
        const diamonds = placed.map((p, k) => {
          const [x, y] = at(p);
          const s = 7;
          return L.svgEl("g", { class: "placed", "data-place": String(k) },
            L.svgEl("polygon", {
              points: `${x},${y - s} ${x + s},${y} ${x},${y + s} ${x - s},${y}`,
              fill: "#fff", stroke: "#000", "stroke-width": "2",
            }),
            L.svgEl("text", { x: (x + s + 2).toFixed(1), y: (y - s + 2).toFixed(1), "font-size": "11", text: String(k + 1) }));
        });
        svg.replaceChildren(...circles, ...diamonds);
        svg.dataset.points = String(points.length);
        svg.dataset.placed = String(placed.length);

        const recolour = (by) => {
          const k = keyOf(data, by);
          const counts = k.names.map(() => 0);
          k.of.forEach((j, i) => {
            counts[j] += 1;
            circles[i].setAttribute("fill", k.colours[j]);
          });
          // the key lists what is drawn: entries of no point are left out
          key.replaceChildren(...k.names.flatMap((n, j) => (counts[j] ? [L.el("li", { "data-colour": k.colours[j] },
            L.el("span", { class: "swatch", style: `display:inline-block;width:11px;height:11px;margin-right:4px;background:${k.colours[j]}` }),
            `${n} (${counts[j]})`)] : [])));
          if (placed.length) key.append(L.el("li", { text: `◇ placed (${placed.length})` }));
          svg.dataset.colourBy = by;
        };
        select.value = ["label", "prediction", "correct"].includes(data.colour_by) ? data.colour_by : "label";
        recolour(select.value);
        select.addEventListener("change", () => recolour(select.value));

        const showPoint = (k) => {
          const p = points[k];
          const verdict = p.correct === true ? "correct" : p.correct === false ? "wrong" : "no label";
          hover.replaceChildren(
            thumb(data, p.index, `image ${p.index}: ${p.id}`),
            L.el("div", { class: "scatter-caption" },
              L.el("div", { text: `label ${p.label === null ? "—" : p.label}` }),
              L.el("div", { text: `predicted ${p.prediction} (${verdict})` }),
              L.el("div", { class: "hint", style: "overflow-wrap:anywhere", text: `#${p.index} · ${p.id}` })));
          hover.dataset.index = String(p.index);
          delete hover.dataset.place;
        };
        const showPlaced = (k) => {
          const p = placed[k];
          hover.replaceChildren(
            L.el("div", { class: "scatter-caption", style: "flex-basis:100%" },
              L.el("strong", { text: `${k + 1}: ${p.name}` }), ` — predicted ${p.prediction}; nearest dataset images:`),
            ...(p.neighbours || []).map((n) => L.el("figure", { style: "margin:0;text-align:center;font-size:11px" },
              thumb(data, n.index, `image ${n.index}: ${n.id}`),
              L.el("figcaption", { text: `${n.label === null ? "—" : n.label} · ${L.fmtNumber(Number(n.distance))}` }))));
          hover.dataset.place = String(k);
          delete hover.dataset.index;
        };
        svg.addEventListener("mouseover", (e) => {
          const t = e.target;
          if (t.classList && t.classList.contains("pt")) showPoint(Number(t.dataset.k));
          const g = t.closest && t.closest("g.placed");
          if (g) showPlaced(Number(g.dataset.place));
        });
      })
      .catch((e) => L.showError(e));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });

  function fetchData(a) {
    if (!a.links || !a.links.json) return Promise.reject(new Error(`${a.name} has no JSON link.`));
    return L.apiJson(a.links.json).then((body) => body.data || body);
  }
})();
