/* Text models: an input editor (a textarea) and word attributions (an "attribution"
 * artifact with axes ["word"]) drawn as the text with each word highlighted — blue raises
 * the target's score, red lowers it, the strength its |weight| — with the words ranked
 * below. The text and each word's character spans come from the result's extras (text,
 * spans); without them the words are shown in order. Other attributions go to the
 * renderer this one wraps. */
"use strict";

(function () {
  const L = window.Lantern;
  const prev = L.RENDERERS.attribution;
  const POS = [31, 119, 180];
  const NEG = [214, 39, 40];

  function colour(v, max) {
    const base = v >= 0 ? POS : NEG;
    const a = max > 0 ? (0.85 * Math.abs(v)) / max : 0;
    const c = base.map((b) => Math.round(255 + (b - 255) * a));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  function isWords(a) {
    return Array.isArray(a.axes) && a.axes.length === 1 && a.axes[0] === "word";
  }

  function wordSpan(word, i, v, max) {
    return L.el("span", {
      class: "text-word",
      "data-index": String(i),
      "data-weight": String(v),
      title: `${word}: ${v >= 0 ? "+" : ""}${L.fmtNumber(v)}`,
      style: `background:${colour(v, max)};padding:1px 2px;border-radius:3px;`,
      text: word,
    });
  }

  /** The text with its words highlighted (spans: per feature, its [start, end] list). */
  function highlighted(text, spans, words, values, max) {
    const p = L.el("p", { class: "text-attribution", style: "font-size:16px;line-height:1.9;white-space:pre-wrap;" });
    const occ = [];
    if (typeof text === "string" && Array.isArray(spans) && spans.length === words.length) {
      spans.forEach((list, j) => (list || []).forEach((s) => occ.push([s[0], s[1], j])));
    }
    if (!occ.length) {
      words.forEach((w, j) => {
        if (j) p.append(" ");
        p.append(wordSpan(w, j, values[j] || 0, max));
      });
      return p;
    }
    occ.sort((x, y) => x[0] - y[0]);
    let pos = 0;
    for (const [s, e, j] of occ) {
      if (s > pos) p.append(text.slice(pos, s));
      p.append(wordSpan(text.slice(s, e), j, values[j] || 0, max));
      pos = e;
    }
    if (pos < text.length) p.append(text.slice(pos));
    return p;
  }

  function ranking(words, values) {
    const order = words.map((_, j) => j).sort((x, y) => Math.abs(values[y]) - Math.abs(values[x]));
    const tbody = L.el("tbody");
    for (const j of order.slice(0, 12)) {
      tbody.append(
        L.el(
          "tr",
          { "data-word": words[j] },
          L.el("td", { text: words[j] }),
          L.el("td", { class: "num", text: L.fmtNumber(values[j]) })
        )
      );
    }
    return L.el(
      "table",
      { class: "table text-ranking" },
      L.el("thead", {}, L.el("tr", {}, L.el("th", { text: "word" }), L.el("th", { text: "weight" }))),
      tbody
    );
  }

  function renderWords(a, ctx) {
    const frame = L.cardFrame(a, true);
    frame.node.classList.add("card-text");
    const extras = (ctx.result && ctx.result.extras) || {};
    const draw = (values) => {
      const words = (a.meta && a.meta.feature_names) || extras.words || [];
      const max = Math.max(0, ...values.map((v) => Math.abs(v)));
      frame.body.append(
        highlighted(extras.text, extras.spans, words, values, max),
        L.el("p", { class: "hint", text: "Blue words raise the target's score, red ones lower it." }),
        ranking(words, values)
      );
      frame.node.dataset.state = "drawn";
    };
    if (Array.isArray(extras.weights) && a.name === "attribution") {
      draw(extras.weights.map(Number));
    } else if (a.links && a.links.json) {
      L.apiJson(a.links.json)
        .then((body) => draw(((body && body.data && body.data.values) || []).map(Number)))
        .catch((e) => L.showError(e));
    }
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  }

  L.registerRenderer("attribution", (a, ctx) => (isWords(a) ? renderWords(a, ctx) : prev(a, ctx)));

  L.registerInputEditor("text", (model, onChange) => {
    const limit = (model && model.manifest && model.manifest.max_chars) || 10000;
    const area = L.el("textarea", {
      id: "text-input",
      rows: "6",
      maxlength: String(limit),
      placeholder: "Type or paste a text to explain",
      "aria-label": "The text to explain",
      style: "width:100%;box-sizing:border-box;font-size:15px;",
    });
    area.addEventListener("input", () => onChange());
    const node = L.el("div", { class: "text-editor" }, area, L.el("p", { class: "hint", text: `At most ${limit} characters.` }));
    return {
      node,
      title: "Text",
      value() {
        return area.value.trim() ? { modality: "text", text: area.value } : null;
      },
    };
  });
})();
