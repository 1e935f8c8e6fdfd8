/* Semantic dictionary (artifact type "dictionary", method semantic_dictionary): a grid
 * over the input image, one cell per position of the layer, each showing its top channel's
 * feature visualisation; clicking a cell lists its top-n channels with their activations
 * and thumbnails (the image artifacts the dictionary names). */
"use strict";

(function () {
  const L = window.Lantern;

  function artifactByName(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name);
  }

  L.registerRenderer("dictionary", (a, ctx) => {
    const frame = L.cardFrame(a, true);
    const links = a.links || {};
    const shape = Array.isArray(a.shape) ? a.shape : [0, 0, 0];
    const [h, w] = shape;
    const side = 384;
    const grid = L.el("div", {
      class: "dict-grid",
      role: "grid",
      "aria-label": `${a.name}: top channels at each of ${h}×${w} positions`,
      style: `position:relative;width:${side}px;height:${side}px;background:#222 center/100% 100% no-repeat;`,
    });
    if (ctx.image && links.overlay) grid.style.backgroundImage = `url("${links.overlay}")`;
    const detail = L.el("div", { class: "dict-detail" });
    frame.body.append(grid, detail);
    const thumbSrc = (data, c) => {
      const name = (data.thumbnails || {})[String(c)];
      const t = name ? artifactByName(ctx, name) : null;
      return t && t.links ? t.links.png : null;
    };
    const show = (data, y, x) => {
      const chans = data.channels[y][x];
      const vals = data.values[y][x];
      const items = chans.map((c, r) => {
        const src = thumbSrc(data, c);
        return L.el(
          "figure",
          { class: "dict-unit", "data-channel": String(c), style: "display:inline-block;margin:0 .5em;text-align:center" },
          src ? L.el("img", { src, alt: `channel ${c}`, style: "width:72px;height:72px" }) : null,
          L.el("figcaption", { text: `#${c} · ${L.fmtNumber(Number(vals[r]))}` })
        );
      });
      detail.replaceChildren(
        L.el("p", { class: "hint", text: `position (${y}, ${x}): top ${chans.length} channels` }),
        ...items
      );
      detail.dataset.position = `${y},${x}`;
    };
    fetchData(a)
      .then((data) => {
        const cells = [];
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const top = data.channels[y][x][0];
            const src = thumbSrc(data, top);
            const cell = L.el(
              "button",
              {
                class: "dict-cell",
                type: "button",
                role: "gridcell",
                "data-y": String(y),
                "data-x": String(x),
                "data-channel": String(top),
                title: `(${y}, ${x}): ` + data.channels[y][x].map((c) => `#${c}`).join(", "),
                style:
                  `position:absolute;left:${(100 * x) / w}%;top:${(100 * y) / h}%;` +
                  `width:${100 / w}%;height:${100 / h}%;padding:8%;border:0;background:transparent;cursor:pointer`,
              },
              src ? L.el("img", { src, alt: `channel ${top}`, style: "width:100%;height:100%;opacity:.85;display:block" }) : null
            );
            cell.addEventListener("click", () => show(data, y, x));
            cells.push(cell);
          }
        }
        grid.replaceChildren(...cells);
        grid.dataset.cells = String(cells.length);
        if (h && w) show(data, 0, 0);
      })
      .catch((e) => {
        detail.append(L.el("p", { class: "card-note error-note", text: `Could not load ${a.name}: ${e.message || e}` }));
        L.showError(e);
      });
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });

  function fetchData(a) {
    if (!a.links || !a.links.json) return Promise.reject(new Error("no JSON link"));
    return L.apiJson(a.links.json).then((body) => (body && body.data) || {});
  }
})();
