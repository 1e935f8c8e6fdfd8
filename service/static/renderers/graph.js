/* Layered graphs (artifact type "graph", method concept_graph): the server's layout drawn
 * as SVG — layers as columns, each node its max-activating patch, edges as curves whose
 * width follows their weight — inside a viewport the reader moves: the wheel zooms about
 * the pointer, a drag pans, a double click (or "reset") fits it again. Hovering a node
 * shows its layer, channel, score, counts, its image and its strongest inputs, and
 * highlights its edges; hovering an edge shows its count, weight and influence.
 * The viewport's transform is kept in data-transform="tx,ty,k" for tests. */
"use strict";

(function () {
  const L = window.Lantern;
  const MIN_K = 0.2;
  const MAX_K = 8;

  function fetchData(a) {
    if (!a.links || !a.links.json) return Promise.reject(new Error("no JSON link"));
    return L.apiJson(a.links.json).then((body) => (body && body.data) || {});
  }

  const fmt = (v) => L.fmtNumber(typeof v === "number" ? Math.round(v * 1000) / 1000 : v);

  function edgeWidth(w) {
    return 1 + 7 * Math.min(Math.max(Number(w) || 0, 0), 1);
  }

  function draw(data, frame) {
    const lay = data.layout || { width: 200, height: 100, positions: {}, columns: [] };
    const pos = lay.positions || {};
    const nodes = Array.isArray(data.nodes) ? data.nodes : [];
    const edges = Array.isArray(data.edges) ? data.edges : [];
    const byId = new Map(nodes.map((n) => [String(n.id), n]));
    const svg = L.svgEl("svg", {
      class: "graph-view",
      viewBox: `0 0 ${lay.width} ${lay.height}`,
      width: "100%",
      role: "img",
      "aria-label": `${data.title || "graph"}: ${nodes.length} units in ${(data.layers || []).length} layers, ${edges.length} influences`,
      "data-nodes": String(nodes.length),
      "data-edges": String(edges.length),
      style: `max-height:640px;aspect-ratio:${lay.width}/${lay.height};background:#fff;cursor:grab;touch-action:none;user-select:none;border:1px solid #ddd;border-radius:4px`,
    });
    const view = L.svgEl("g", { class: "graph-viewport" });
    const detail = L.el("div", { class: "graph-detail hint", "aria-live": "polite", text: "Hover a unit or an influence for its numbers; wheel to zoom, drag to pan, double-click to reset." });
    const heads = (lay.columns || []).map((c) =>
      L.svgEl("text", { x: c.x, y: 20, "text-anchor": "middle", "font-weight": "bold", "font-size": 12, text: String(c.layer) })
    );
    const edgeEls = [];
    const edgeLayer = L.svgEl("g", { class: "graph-edges", fill: "none" });
    for (const e of edges) {
      const a = pos[String(e.source)];
      const b = pos[String(e.target)];
      if (!a || !b) continue;
      const x0 = a.x + a.size;
      const y0 = a.y + a.size / 2;
      const x1 = b.x;
      const y1 = b.y + b.size / 2;
      const mid = (x0 + x1) / 2;
      const w = Math.min(Math.max(Number(e.weight) || 0, 0), 1);
      const path = L.svgEl("path", {
        class: "graph-edge",
        d: `M${x0},${y0} C${mid},${y0} ${mid},${y1} ${x1},${y1}`,
        stroke: "rgb(31,119,180)",
        "stroke-width": edgeWidth(w),
        "stroke-opacity": 0.25 + 0.6 * w,
        "data-source": String(e.source),
        "data-target": String(e.target),
      });
      path.addEventListener("mouseenter", () => {
        path.setAttribute("stroke", "rgb(214,39,40)");
        detail.dataset.edge = `${e.source}>${e.target}`;
        delete detail.dataset.node;
        detail.replaceChildren(
          L.el("strong", { text: `${e.source} → ${e.target}` }),
          L.el("span", { text: ` · weight ${fmt(e.weight)}` + (e.count !== undefined ? ` · ${e.count} images` : "") + (e.influence !== undefined ? ` · mean influence ${fmt(e.influence)}` : "") })
        );
      });
      path.addEventListener("mouseleave", () => path.setAttribute("stroke", "rgb(31,119,180)"));
      edgeEls.push(path);
      edgeLayer.append(path);
    }
    const nodeLayer = L.svgEl("g", { class: "graph-nodes" });
    for (const n of nodes) {
      const p = pos[String(n.id)];
      if (!p) continue;
      const g = L.svgEl("g", { class: "graph-node", "data-id": String(n.id), "data-layer": String(n.layer), "data-channel": String(n.channel), style: "cursor:pointer" });
      if (n.patch) {
        g.append(L.svgEl("image", { x: p.x, y: p.y, width: p.size, height: p.size, href: n.patch, preserveAspectRatio: "none", style: "image-rendering:pixelated" }));
      }
      const box = L.svgEl("rect", { x: p.x, y: p.y, width: p.size, height: p.size, fill: n.patch ? "none" : "#eee", stroke: "#3c3c3c", "stroke-width": 1 });
      g.append(box, L.svgEl("text", { x: p.x + p.size / 2, y: p.y + p.size + 12, "text-anchor": "middle", "font-size": 11, text: `c${n.channel} · ${fmt(n.score)}` }));
      g.addEventListener("mouseenter", () => {
        box.setAttribute("stroke", "rgb(214,39,40)");
        box.setAttribute("stroke-width", 3);
        for (const el of edgeEls) {
          const hot = el.dataset.source === String(n.id) || el.dataset.target === String(n.id);
          el.classList.toggle("hot", hot);
          el.setAttribute("stroke", hot ? "rgb(214,39,40)" : "rgb(31,119,180)");
        }
        detail.dataset.node = String(n.id);
        delete detail.dataset.edge;
        const facts = [
          `score ${fmt(n.score)}`,
          n.count !== undefined ? `${n.count} images (${fmt(100 * (n.share || 0))} %)` : null,
          n.mean !== undefined ? `mean max activation ${fmt(n.mean)}` : null,
          n.image ? `strongest on ${n.image}` : null,
        ].filter(Boolean);
        const inputs = Array.isArray(n.inputs) && n.inputs.length
          ? "top inputs: " + n.inputs.map((i) => `c${i.channel} (${i.count})`).join(", ")
          : null;
        detail.replaceChildren(
          L.el("strong", { text: `${n.layer} · channel ${n.channel}` }),
          L.el("span", { text: " · " + facts.join(" · ") }),
          inputs ? L.el("div", { class: "graph-inputs", text: inputs }) : null
        );
      });
      g.addEventListener("mouseleave", () => {
        box.setAttribute("stroke", "#3c3c3c");
        box.setAttribute("stroke-width", 1);
        for (const el of edgeEls) {
          el.classList.remove("hot");
          el.setAttribute("stroke", "rgb(31,119,180)");
        }
      });
      nodeLayer.append(g);
    }
    view.append(...heads, edgeLayer, nodeLayer);
    svg.append(view);

    // pan and zoom: the viewport's translate (tx, ty) and scale k, in the SVG's units
    const t = { x: 0, y: 0, k: 1 };
    const apply = () => {
      view.setAttribute("transform", `translate(${t.x},${t.y}) scale(${t.k})`);
      svg.dataset.transform = `${t.x},${t.y},${t.k}`;
    };
    const toSvg = (clientX, clientY) => {
      const r = svg.getBoundingClientRect();
      const s = Math.max(lay.width / Math.max(r.width, 1), lay.height / Math.max(r.height, 1));
      // the viewBox is centred in the element (preserveAspectRatio xMidYMid meet)
      const ox = (r.width * s - lay.width) / 2;
      const oy = (r.height * s - lay.height) / 2;
      return { x: (clientX - r.left) * s - ox, y: (clientY - r.top) * s - oy, s };
    };
    svg.addEventListener(
      "wheel",
      (ev) => {
        ev.preventDefault();
        const p = toSvg(ev.clientX, ev.clientY);
        const k = Math.min(MAX_K, Math.max(MIN_K, t.k * Math.exp(-ev.deltaY * 0.0015)));
        // keep the point under the pointer where it is
        t.x = p.x - ((p.x - t.x) * k) / t.k;
        t.y = p.y - ((p.y - t.y) * k) / t.k;
        t.k = k;
        apply();
      },
      { passive: false }
    );
    let drag = null;
    svg.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, tx: t.x, ty: t.y, s: toSvg(ev.clientX, ev.clientY).s };
      svg.style.cursor = "grabbing";
      if (svg.setPointerCapture) svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      t.x = drag.tx + (ev.clientX - drag.x) * drag.s;
      t.y = drag.ty + (ev.clientY - drag.y) * drag.s;
      apply();
    });
    const end = () => {
      drag = null;
      svg.style.cursor = "grab";
    };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    const reset = () => {
      t.x = 0;
      t.y = 0;
      t.k = 1;
      apply();
    };
    svg.addEventListener("dblclick", reset);
    apply();
    const zoomBy = (f) => {
      const k = Math.min(MAX_K, Math.max(MIN_K, t.k * f));
      const cx = lay.width / 2;
      const cy = lay.height / 2;
      t.x = cx - ((cx - t.x) * k) / t.k;
      t.y = cy - ((cy - t.y) * k) / t.k;
      t.k = k;
      apply();
    };
    const tools = L.el(
      "div",
      { class: "graph-tools", style: "display:flex;gap:.4em;margin:.3em 0" },
      L.el("button", { type: "button", class: "graph-zoom-in", title: "Zoom in", text: "+", onclick: () => zoomBy(1.25) }),
      L.el("button", { type: "button", class: "graph-zoom-out", title: "Zoom out", text: "−", onclick: () => zoomBy(0.8) }),
      L.el("button", { type: "button", class: "graph-reset", title: "Fit the graph again", text: "reset", onclick: reset })
    );
    frame.body.replaceChildren(
      data.title ? L.el("p", { class: "hint graph-title", text: data.title }) : null,
      tools,
      svg,
      detail
    );
  }

  L.registerRenderer("graph", (a, ctx) => {
    const frame = L.cardFrame(a, true);
    frame.body.append(L.el("p", { class: "hint", text: "Loading the graph…" }));
    frame.node.setAttribute("aria-busy", "true");
    fetchData(a)
      .then((data) => draw(data, frame))
      .catch((e) => {
        frame.body.replaceChildren(L.el("p", { class: "card-note error-note", text: `Could not load ${a.name}: ${e.message || e}` }));
        L.showError(e);
      })
      .finally(() => frame.node.removeAttribute("aria-busy"));
    const dl = L.withDownloads(frame, a, ctx, null);
    return { node: frame.node, update: dl.update };
  });
})();
