/* NMF groups (artifact type "groups", method nmf_groups): the colour-coded map of the
 * groups over the input image (the artifact's overlay; its PNG without an image), and the
 * colour key: one row per group with its swatch, its attribution to the target and its
 * share of the total, and the group's feature visualisation (the image artifact named in
 * meta.thumbnails). */
"use strict";

(function () {
  const L = window.Lantern;

  function artifactByName(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name);
  }

  L.registerRenderer("groups", (a, ctx) => {
    const frame = L.cardFrame(a, true);
    const meta = a.meta || {};
    const links = a.links || {};
    const colours = Array.isArray(meta.colours) ? meta.colours : [];
    const attribution = Array.isArray(meta.attribution) ? meta.attribution : [];
    const thumbnails = Array.isArray(meta.thumbnails) ? meta.thumbnails : [];
    const total = attribution.reduce((s, v) => s + Number(v), 0);
    const overImage = !!(ctx.image && links.overlay);
    const src = overImage ? links.overlay + "&alpha=0.65" : links.png;
    const map = L.el("img", {
      class: "artifact-img groups-map",
      src,
      alt: `${a.name}: ${colours.length} groups of ${meta.layer || "the layer"}, colour-coded`,
      "data-over-image": overImage ? "1" : "0",
      style: "image-rendering: pixelated; max-width: 100%;",
    });
    const rows = colours.map((c, i) => {
      const thumb = thumbnails[i] ? artifactByName(ctx, thumbnails[i]) : null;
      const share = total !== 0 ? (100 * Number(attribution[i])) / total : 0;
      return L.el(
        "tr",
        { "data-group": String(i) },
        L.el(
          "td",
          {},
          L.el("span", {
            class: "swatch",
            "data-colour": c,
            title: c,
            style: `display:inline-block;width:1.2em;height:1.2em;border-radius:3px;vertical-align:middle;background:${c}`,
          })
        ),
        L.el("td", { text: `group ${i}` }),
        L.el("td", { class: "num", text: L.fmtNumber(Number(attribution[i])) }),
        L.el("td", { class: "num", text: `${share.toFixed(1)} %` }),
        L.el(
          "td",
          {},
          thumb && thumb.links && thumb.links.png
            ? L.el("img", {
                class: "group-thumb",
                src: thumb.links.png,
                alt: `feature visualisation of group ${i}`,
                style: "width:64px;height:64px;",
              })
            : L.el("span", { class: "hint", text: "—" })
        )
      );
    });
    const head = L.el(
      "tr",
      {},
      ...["colour", "group", "attribution", "share", "visualisation"].map((t) => L.el("th", { text: t }))
    );
    const key = L.el(
      "table",
      { class: "table groups-key", "aria-label": "Colour key of the groups" },
      L.el("thead", {}, head),
      L.el("tbody", {}, ...rows)
    );
    frame.body.append(
      L.el("div", { class: "groups-view", style: "display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start" }, map, key)
    );
    if (meta.layer) {
      frame.body.append(
        L.el("p", { class: "hint", text: `${meta.layer} · Σ attribution ${L.fmtNumber(total)}` })
      );
    }
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });
})();
