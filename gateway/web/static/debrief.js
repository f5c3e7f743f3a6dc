/* The debrief: fatigue per rider and segment, quadrant changes, the squad, comparisons, the report. */
"use strict";

let FATIGUE = null;  // outside Alpine's proxies, like the matrix's chart

function debriefPage() {
  return {
    // Globals the page's attributes would need: the CSP build of Alpine reads only the component.
    matrixHref() { return "/?session=" + encodeURIComponent(this.session || ""); },
    hasComparable() { return Object.keys((this.data && this.data.comparable) || {}).length > 0; },
    sessions: [], session: "", rider: "", tag: "", data: {}, message: "",

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
    transitions() { return (this.data.fatigue && this.data.fatigue.transitions) || []; },

    trendText(t) {
      const sign = v => (v > 0 ? "+" : "") + v.toFixed(1);
      const ci = t.low_pct === null ? "" : ` (95 %: ${sign(t.low_pct)} to ${sign(t.high_pct)} %)`;
      return `${sign(t.per_lap_pct)} % a lap${ci}: ${t.verdict === "too few laps to tell" ? "too few laps for an interval" : t.verdict}`;
    },

    reportUrl(own) {
      const q = new URLSearchParams({ session: this.session || "" });
      if (own && this.rider) q.set("rider", this.rider);
      return `/api/report.pdf?${q}`;
    },

    // One line per segment, each with its own shape (not colour alone), lap on x.
    draw() {
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
