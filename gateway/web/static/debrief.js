/* The debrief: fatigue per rider and segment, quadrant changes, the squad, comparisons, the report. */
"use strict";

let FATIGUE = null;  // outside Alpine's proxies, like the matrix's chart

function debriefPage() {
  return {
    // Globals the page's attributes would need: the CSP build of Alpine reads only the component.
    matrixHref() { return "/?session=" + encodeURIComponent(this.session || ""); },
    // What went into each side of a comparison, and who was left out (too few runs of a setup).
    sidesText(s) {
      const c = this.data.comparison || {};
      const side = (name, x) => `${name}: ${x.riders.length} rider(s), ${x.sessions.length} session(s), ${x.laps} lap(s), ${x.runs} run(s)`;
      const parts = [side(c.a, s.sides.a), side(c.b, s.sides.b)];
      if (s.left_out.length) parts.push(`left out (under ${c.min_runs} runs of a setup): ${s.left_out.join("; ")}`);
      return parts.join(" · ");
    },
    hasComparable() { return Object.keys((this.data && this.data.comparable) || {}).length > 0; },
    sessions: [], session: "", rider: "", tag: "", data: {}, message: "", wbal: null,

    // W' through the session for the chosen rider (CP and W' from their history on this server).
    async loadWbal() {
      this.wbal = null;
      if (!this.session || !this.rider) return;
      try {
        this.wbal = await this.getJSON(`/api/wbalance?${new URLSearchParams({ session: this.session, rider: this.rider })}`);
      } catch (e) { this.wbal = { reason: e.message, laps: [] }; }
    },
    wbalHead() {
      const w = this.wbal;
      if (!w) return "";
      if (w.cp_w === null || w.cp_w === undefined) return w.reason;
      return `CP ${Math.round(w.cp_w)} W and W' ${(w.w_prime_j / 1000).toFixed(1)} kJ from the best 3-20 minute efforts of ${w.sessions_used} session(s) (2-parameter model); W' balance by Skiba's integral form.`;
    },
    planForm: { tag: "", a: "", b: "", runs: 4 }, planned: null,
    async makePlan() {
      const f = this.planForm;
      try {
        this.planned = await this.getJSON(`/api/plan?${new URLSearchParams({ session: this.session, tag: f.tag, a: f.a, b: f.b, runs: f.runs })}`);
      } catch (e) { this.planned = { note: e.message, order: {} }; }
    },
    // The plan goes to the set-up page (this phone): each session started there tags the riders' runs.
    usePlan() {
      const p = this.planned;
      localStorage.setItem("trackside-plan", JSON.stringify({ tag: this.planForm.tag, order: p.order, runs: p.runs, next: 0 }));
      this.planUsed = true;
    },
    planUsed: false,
    planRows() { return Object.entries((this.planned && this.planned.order) || {}).map(([rider, setups]) => ({ rider, setups: setups.join(" → ") })); },
    lapWbal(l) { return `lap ${l.lap}: ${(l.spent_j / 1000).toFixed(1)} kJ above CP, W' down to ${l.lowest_pct.toFixed(0)} %`; },

    async start() {
      const params = new URLSearchParams(location.search);
      this.sessions = (await this.getJSON("/api/sessions")).filter(s => s.results).reverse();
      this.session = params.get("session") || (this.sessions[0] || {}).session || "";
      Chart.defaults.font.size = 14;
      Chart.defaults.color = "#14202b";
      await this.load();
      window.debrief = this;  // for the browser tests
    },

    getJSON(url, options) { return fetchJSON(url, options); },

    async load() {
      if (!this.session) { this.message = "No session with results yet."; return; }
      const q = new URLSearchParams({ session: this.session });
      if (this.tag) q.set("tag", this.tag);
      try {
        this.data = await this.getJSON(`/api/debrief?${q}`);
        this.message = "";
      } catch (e) { this.message = e.message; return; }
      if (!this.riders().some(r => r.id === this.rider)) this.rider = (this.riders()[0] || {}).id || "";
      this.draw();
    },

    riders() {
      const seen = {};
      for (const s of (this.data.fatigue && this.data.fatigue.series) || []) seen[s.rider_id] = s.name;
      return Object.entries(seen).map(([id, name]) => ({ id, name })).sort((a, b) => a.name.localeCompare(b.name));
    },
    riderName() { return (this.riders().find(r => r.id === this.rider) || {}).name || ""; },
    riderSeries() { return ((this.data.fatigue && this.data.fatigue.series) || []).filter(s => s.rider_id === this.rider); },
    // A chart of one lap is a dot at 0 on ±1 axes: said in words instead (as the PDF does).
    oneLap() { return this.riderSeries().every(s => s.laps.length < 2); },
    // The chosen rider's changes of quadrant only (scores inside the neutral band are no quadrant).
    transitions() { return ((this.data.fatigue && this.data.fatigue.transitions) || []).filter(t => t.rider_id === this.rider); },
    // Each lap's time against lap 1, split into what the power explains and the rest.
    splitText(s) {
      return s.laps.slice(1).filter(l => l.power_explains_s !== null && l.power_explains_s !== undefined).map(l =>
        `lap ${l.lap}: ${(l.power_explains_s + l.rest_s).toFixed(1)} s = ${l.power_explains_s.toFixed(1)} s power + ${l.rest_s.toFixed(1)} s other`).join("; ");
    },

    trendText(t) {
      const sign = v => (v > 0 ? "+" : "") + v.toFixed(1);
      const ci = t.low_pct === null ? "" : ` (95 %: ${sign(t.low_pct)} to ${sign(t.high_pct)} %)`;
      return `${sign(t.per_lap_pct)} % a lap${ci}: ${t.verdict}`;
    },

    // The phone's share sheet where it has one (a coach sends the PDF to a rider); else the download.
    canShare() { return typeof navigator.share === "function" && typeof navigator.canShare === "function"; },
    async shareReport(own) {
      const reply = await fetch(this.reportUrl(own));
      const named = (reply.headers.get("Content-Disposition") || "").match(/filename\*=UTF-8''([^;]+)/);
      const name = named ? decodeURIComponent(named[1]) : "report.pdf";
      const file = new File([await reply.blob()], name, { type: "application/pdf" });
      if (navigator.canShare({ files: [file] })) await navigator.share({ files: [file], title: name });
      else location.href = this.reportUrl(own);
    },

    reportUrl(own) {
      const q = new URLSearchParams({ session: this.session || "" });
      if (own && this.rider) q.set("rider", this.rider);
      return `/api/report.pdf?${q}`;
    },

    // One line per segment, each with its own shape (not colour alone), lap on x.
    draw() {
      this.loadWbal();
      const series = this.riderSeries();
      const datasets = series.map((s, i) => ({
        label: `${s.segment} ${s.segment_name}`, data: s.laps.map(l => ({ x: l.lap, y: l.vs_first_pct })),
        borderColor: RIDER_COLOURS[i % RIDER_COLOURS.length], backgroundColor: RIDER_COLOURS[i % RIDER_COLOURS.length],
        pointStyle: ["circle", "rect", "triangle", "rectRot", "star"][i % 5], pointRadius: 6, borderWidth: 2,
      }));
      const options = { animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { type: "linear", title: { display: true, text: "lap" }, ticks: { stepSize: 1 } },
                  y: { title: { display: true, text: "time change from lap 1 (%)" } } },
        plugins: { legend: { position: "bottom", labels: { usePointStyle: true } } } };
      if (!FATIGUE) FATIGUE = new Chart(document.getElementById("fatigue"), { type: "line", data: { datasets }, options });
      else { FATIGUE.data.datasets = datasets; FATIGUE.update("none"); }
    },
  };
}

// The CSP build of Alpine (no 'unsafe-eval') sees only components registered by name.
document.addEventListener("alpine:init", () => Alpine.data("debriefPage", debriefPage));
