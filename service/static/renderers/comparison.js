/* Before/after (artifact type "comparison", e.g. DeepDream's before_after): the two image
 * artifacts it names stacked, a slider revealing the "after" over the "before", and the
 * objective on each. */
"use strict";

(function () {
  const L = window.Lantern;

  function artifactByName(ctx, name) {
    return ((ctx.result && ctx.result.artifacts) || []).find((x) => x && x.name === name);
  }

  L.registerRenderer("comparison", (a, ctx) => {
    const meta = a.meta || {};
    const before = artifactByName(ctx, meta.before);
    const after = artifactByName(ctx, meta.after);
    if (!before || !after || !before.links || !after.links) return L.renderGeneric(a, ctx);
    const frame = L.cardFrame(a, true);
    const imgStyle = "display:block;width:100%;height:auto;";
    const under = L.el("img", { class: "cmp-before", src: before.links.png, alt: `${meta.before} (before)`, style: imgStyle });
    const over = L.el("img", {
      class: "cmp-after",
      src: after.links.png,
      alt: `${meta.after} (after)`,
      style: imgStyle + "position:absolute;left:0;top:0;",
    });
    const stack = L.el("div", { class: "cmp-stack", style: "position:relative;max-width:448px;" }, under, over);
    const slider = L.el("input", {
      type: "range",
      min: "0",
      max: "100",
      value: "50",
      class: "cmp-slider",
      "aria-label": `How much of ${meta.after} to show over ${meta.before}`,
      style: "width:100%;max-width:448px;",
    });
    const apply = () => {
      over.style.clipPath = `inset(0 ${100 - Number(slider.value)}% 0 0)`;
      stack.dataset.reveal = slider.value;
    };
    slider.addEventListener("input", apply);
    apply();
    const label = meta.label || "objective";
    const values = L.el("p", {
      class: "hint cmp-values",
      text: `${label}: ${meta.before} ${L.fmtNumber(Number(meta.before_value))} → ${meta.after} ${L.fmtNumber(Number(meta.after_value))}`,
    });
    frame.body.append(stack, slider, values);
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });
})();
