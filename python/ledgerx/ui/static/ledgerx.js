// ledgerx dashboard: draws the page's charts from the JSON the server embedded in
// #page-data, keeps the runs list live, then sets document.body.dataset.ready = "1".
(function () {
  "use strict";
  const body = document.body;
  const el = document.getElementById("page-data");
  const data = el ? JSON.parse(el.textContent || "{}") : {};
  const pending = [];
  const CONFIG = { displaylogo: false, responsive: true };
  const LAYOUT = {
    margin: { l: 60, r: 20, t: 36, b: 46 },
    height: 340,
    font: { size: 12 },
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
  };

  function plot(id, traces, layout) {
    const div = document.getElementById(id);
    if (!div || typeof Plotly === "undefined") return null;
    const p = Plotly.react(div, traces, Object.assign({}, LAYOUT, layout || {}), CONFIG);
    pending.push(p);
    return p;
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  // -- the runs list: selection for compare, live refresh ------------------------------------
  function runsPage() {
    const form = document.getElementById("run-filters");
    for (const id of ["f-status", "f-kind"]) {
      const s = document.getElementById(id);
      if (s) s.addEventListener("change", () => form.requestSubmit());
    }
    const btn = document.getElementById("compare-btn");
    const picked = () => Array.from(document.querySelectorAll("input.pick:checked")).map((c) => c.value);
    document.addEventListener("change", (e) => {
      if (e.target.classList && e.target.classList.contains("pick")) btn.disabled = picked().length < 2;
    });
    btn.addEventListener("click", () => {
      window.location.href = "/compare?runs=" + picked().map(encodeURIComponent).join(",");
    });
    updateCount();
    live(refreshRuns);
  }

  function updateCount() {
    const tb = document.getElementById("runs-body");
    const c = document.getElementById("runs-count");
    if (tb && c) c.textContent = tb.dataset.shown + " of " + tb.dataset.total;
  }

  async function refreshRuns() {
    const keep = new Set(Array.from(document.querySelectorAll("input.pick:checked")).map((c) => c.value));
    const r = await fetch("/partials/runs" + window.location.search, { cache: "no-store" });
    if (!r.ok) return;
    const tpl = document.createElement("template");
    tpl.innerHTML = (await r.text()).trim();
    const fresh = tpl.content.querySelector("#runs-body");
    const old = document.getElementById("runs-body");
    if (!fresh || !old) return;
    fresh.querySelectorAll("input.pick").forEach((c) => { c.checked = keep.has(c.value); });
    old.replaceWith(fresh);
    updateCount();
    body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
  }

  // Poll the index's identity; call onChange after each publish.
  function live(onChange) {
    const every = Number(body.dataset.pollMs || 2000);
    let version = null;
    let busy = false;
    async function tick() {
      if (busy) return;
      busy = true;
      try {
        const r = await fetch("/api/version", { cache: "no-store" });
        if (r.ok) {
          const v = (await r.json()).version;
          if (version !== null && v !== version) await onChange();
          version = v;
          body.dataset.indexVersion = v || "";
        }
      } catch (e) {
        // the server is restarting or gone: try again at the next tick
      } finally {
        busy = false;
      }
    }
    tick();
    setInterval(tick, every);
  }

  // -- one run ---------------------------------------------------------------------------------
  function runPage() {
    gantt();
    if (data.series) {
      trialsChart();
      scatterChart();
      const ps = document.getElementById("param-select");
      if (ps) ps.addEventListener("change", scatterChart);
      for (const id of ["metric-select", "goal-select"]) {
        const s = document.getElementById(id);
        if (s) s.addEventListener("change", () => document.getElementById("trial-controls").requestSubmit());
      }
    }
    (data.curves || []).forEach((c, i) => {
      const traces = Object.keys(c.y).map((name) => ({
        type: "scatter", mode: "lines", name: name, x: c.x, y: c.y[name],
      }));
      plot("chart-curve-" + i, traces, { title: { text: c.name }, xaxis: { title: { text: c.x_name } } });
    });
    if (data.status === "running" || data.status === "created") live(async () => window.location.reload());
  }

  function gantt() {
    const g = data.gantt || [];
    if (!g.length) return;
    plot("chart-gantt", [{
      type: "bar",
      orientation: "h",
      y: g.map((p) => p.phase),
      base: g.map((p) => p.start_ms),
      x: g.map((p) => Math.max(0.001, p.end_ms - p.start_ms)),
      marker: { color: g.map((p) => (p.done ? "#1f77b4" : "#ff7f0e")) },
      hovertemplate: "%{y}: %{x} ms<extra></extra>",
    }], {
      height: Math.max(140, 60 + 28 * g.length),
      title: { text: "phase timeline" },
      xaxis: { type: "date" },
      yaxis: { autorange: "reversed", automargin: true },
    });
  }

  function trialsChart() {
    const rows = data.series.rows;
    const m = data.metric;
    const xs = rows.map((r) => r.i);
    const ys = rows.map((r) => num(r.metrics[m]));
    const better = data.goal === "min" ? (a, b) => a < b : (a, b) => a > b;
    let best = null;
    const run = ys.map((y) => { if (y !== null && (best === null || better(y, best))) best = y; return best; });
    plot("chart-trials", [
      { type: "scatter", mode: "markers", name: m, x: xs, y: ys, marker: { size: 5, opacity: 0.7 },
        text: rows.map((r) => "trial " + r.trial_id), hovertemplate: "%{text}<br>" + m + "=%{y}<extra></extra>" },
      { type: "scatter", mode: "lines", name: "best so far", x: xs, y: run, line: { shape: "hv" } },
    ], {
      title: { text: m + " by trial" },
      xaxis: { title: { text: "trial (recording order)" } },
      yaxis: { title: { text: m } },
      legend: { orientation: "h", y: -0.2 },
    });
  }

  function scatterChart() {
    const ps = document.getElementById("param-select");
    const p = ps ? ps.value : null;
    if (!p) return;
    const rows = data.series.rows;
    const m = data.metric;
    plot("chart-scatter", [{
      type: "scatter", mode: "markers", name: p,
      x: rows.map((r) => r.params[p]), y: rows.map((r) => num(r.metrics[m])),
      text: rows.map((r) => "trial " + r.trial_id), marker: { size: 6, opacity: 0.7 },
      hovertemplate: "%{text}<br>" + p + "=%{x}<br>" + m + "=%{y}<extra></extra>",
    }], {
      title: { text: m + " against " + p },
      xaxis: { title: { text: p } },
      yaxis: { title: { text: m } },
    });
  }

  // -- compare ---------------------------------------------------------------------------------
  function comparePage() {
    const c = data.chart;
    if (!c || !c.keys.length) return;
    const traces = c.runs.map((rid, j) => ({
      type: "bar", name: rid, x: c.keys, y: c.values.map((row) => row[j]),
    }));
    plot("chart-compare", traces, { barmode: "group", title: { text: "summary (numeric entries)" } });
  }

  const pages = { runs: runsPage, run: runPage, compare: comparePage };
  function start() {
    performance.mark("ledgerx-draw"); // benches/bench_ui.py reads the marks
    try {
      if (pages[body.dataset.page]) pages[body.dataset.page]();
    } finally {
      Promise.all(pending).then(() => {
        performance.mark("ledgerx-ready");
        body.dataset.ready = "1";
      });
    }
  }
  // plotly.js loads async from the page's head (it runs while the server is still sending the
  // rest of the page): wait for it when it has not run yet.
  const pj = document.getElementById("plotly-js");
  if (pj && typeof Plotly === "undefined") {
    pj.addEventListener("load", start, { once: true });
    pj.addEventListener("error", start, { once: true });
  } else {
    start();
  }
})();
