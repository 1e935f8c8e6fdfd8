/* A dataset analysis's ranking (max_activating / min_activating: a "table" artifact named
 * "ranking" beside an "image" artifact "grid"): a gallery of the ranked patches — each tile
 * cut from the grid PNG by its place in the grid (the job's `tile` and `columns` params) —
 * captioned with its rank, label, score and image id, then the table itself. Any other
 * table is drawn by the built-in table renderer. */
"use strict";

(function () {
  const L = window.Lantern;
  const baseTable = L.RENDERERS.table || L.renderGeneric;
  const PAD = 2; // engine/methods/dataset/common.py grid()

  function artifactByName(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name);
  }

  function isRanking(a, ctx) {
    const grid = artifactByName(ctx, "grid");
    return a && a.name === "ranking" && grid && grid.links && grid.links.png && a.links && a.links.json;
  }

  function renderRanking(a, ctx) {
    const grid = artifactByName(ctx, "grid");
    const params = (ctx.result && ctx.result.params) || {};
    const tile = Number(params.tile) || 64;
    const columns = Number(params.columns) || 8;
    const frame = L.cardFrame(a, true);
    const gallery = L.el("div", { class: "ranking-gallery", style: "display:flex;flex-wrap:wrap;gap:8px;" });
    frame.body.append(gallery);
    L.apiJson(a.links.json)
      .then((body) => {
        const data = body.data || body;
        const cols = data.columns || [];
        const at = (name) => cols.indexOf(name);
        (data.rows || []).forEach((row, k) => {
          const c = k % columns;
          const r = Math.floor(k / columns);
          const x = PAD + c * (tile + PAD);
          const y = PAD + r * (tile + PAD);
          const face = L.el("div", {
            class: "ranking-tile",
            role: "img",
            "aria-label": `rank ${row[at("rank")]}: ${row[at("id")]}`,
            style:
              `width:${tile}px;height:${tile}px;background-image:url("${grid.links.png}");` +
              `background-position:-${x}px -${y}px;background-repeat:no-repeat;`,
          });
          const label = row[at("label")];
          const caption = L.el("div", {
            class: "hint",
            style: `max-width:${tile + 40}px;font-size:11px;overflow-wrap:anywhere;`,
            text: `#${row[at("rank")]} ${label === null ? "" : label + " "}` +
              `${L.fmtNumber(Number(row[at("score")]))} · ${row[at("id")]}`,
          });
          gallery.append(L.el("figure", { style: "margin:0;" }, face, caption));
        });
      })
      .catch((e) => L.showError(e));
    const table = baseTable(a, ctx);
    frame.body.append(table.node);
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  L.registerRenderer("table", (a, ctx) => (isRanking(a, ctx) ? renderRanking(a, ctx) : baseTable(a, ctx)));
})();
