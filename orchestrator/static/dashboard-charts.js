// Charts of GET /stats: jobs created, completed and failed per minute, and latency p50/p95, drawn as
// inline SVG polylines (no chart library).

import { fill, field, h, notice, svg } from "/static/dashboard-dom.js";

const WIDTH = 720;
const HEIGHT = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };
const RANGES = [15, 60, 360, 1440];

export function mountCharts(app, container, params) {
  const say = notice();
  const minutes = RANGES.includes(Number(params.get("minutes"))) ? Number(params.get("minutes")) : 60;
  const range = h("select", {
    id: "chart-range", onchange: () => app.navigate(`#/charts?minutes=${range.value}`),
  }, RANGES.map((m) => h("option", { value: String(m) }, m < 60 ? `${m} min` : `${m / 60} h`)));
  range.value = String(minutes);
  const totals = h("dl", { class: "facts", id: "chart-totals" });
  const throughput = h("figure", { class: "chart", id: "chart-throughput" });
  const latency = h("figure", { class: "chart", id: "chart-latency" });
  let timer = null;
  let closed = false;

  container.append(h("h1", {}, "Charts"), h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, field("Range", range)),
    say, h("section", { class: "card" }, totals), h("section", { class: "card" }, throughput), h("section", { class: "card" }, latency));

  async function load() {
    try {
      const stats = await app.baton.request("GET", `/stats?minutes=${minutes}`);
      if (closed) return;
      const buckets = stats.buckets || stats.minutes || [];
      fill(totals, ...Object.entries(stats.totals || {}).flatMap(([name, value]) => [
        h("dt", {}, name.replaceAll("_", " ")), h("dd", {}, typeof value === "number" ? String(Math.round(value * 100) / 100) : String(value ?? "—"))]));
      fill(throughput, chart(buckets, [
        { key: "created", label: "created", color: "#2563eb" },
        { key: "completed", label: "completed", color: "#15803d" },
        { key: "failed", label: "failed", color: "#b91c1c" },
      ], "Jobs per minute"));
      fill(latency, chart(buckets, [
        { key: "latency_p50_ms", label: "p50 ms", color: "#7c3aed" },
        { key: "latency_p95_ms", label: "p95 ms", color: "#c2410c" },
      ], "Latency, created to terminal (ms)"));
    } catch (error) {
      say.fail(error);
    }
    if (!closed) timer = setTimeout(load, 15000);
  }

  load();
  return () => { closed = true; clearTimeout(timer); };
}

/** A line chart of `series` over the buckets, with a legend and a plain-text summary for screen readers. */
export function chart(buckets, series, title) {
  const values = buckets.flatMap((b) => series.map((s) => Number(b[s.key]) || 0));
  const top = Math.max(1, ...values);
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (buckets.length > 1 ? (i * innerW) / (buckets.length - 1) : innerW / 2);
  const y = (v) => PAD.top + innerH - (v / top) * innerH;
  const grid = [0, 0.5, 1].map((f) => [
    svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top * f), y2: y(top * f), class: "grid" }),
    svg("text", { x: PAD.left - 6, y: y(top * f) + 4, "text-anchor": "end", class: "axis" }, formatNumber(top * f)),
  ]);
  const labels = buckets.length
    ? [0, buckets.length - 1].map((i) => svg("text", {
      x: x(i), y: HEIGHT - 8, "text-anchor": i === 0 ? "start" : "end", class: "axis",
    }, new Date(buckets[i].minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })))
    : [svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "axis" }, "no data yet")];
  const lines = series.map((s) => svg("polyline", {
    points: buckets.map((b, i) => `${x(i).toFixed(1)},${y(Number(b[s.key]) || 0).toFixed(1)}`).join(" "),
    fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.key,
  }));
  const last = buckets[buckets.length - 1] || {};
  const summary = series.map((s) => `${s.label} ${formatNumber(Number(last[s.key]) || 0)}`).join(", ");
  return [
    h("figcaption", {}, title),
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}; last minute: ${summary}` },
      ...grid.flat(), ...labels, ...lines),
    h("ul", { class: "legend" }, series.map((s) => {
      const swatch = h("span", { class: "swatch" });
      swatch.style.background = s.color;
      return h("li", {}, swatch, s.label);
    })),
  ];
}

function formatNumber(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return String(Math.round(value * 10) / 10);
}
