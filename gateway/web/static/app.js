/* The coach's page: the efficiency matrix, live over Server-Sent Events. Served by the box. */
"use strict";

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
  "#469990", "#800000", "#808000", "#000075"];

// Chart.js must not be wrapped in Alpine's reactive proxy: the chart lives outside the component.
let CHART = null;

// The same definitions as gateway/engine/normalize.py (Spread.z and Spread.modified_z).
function scores(metric, x, s) {
  const out = { [`${metric}_zscore`]: null, [`${metric}_modified_zscore`]: null };
  if (x === null || x === undefined || !s) return out;
  if (s.n >= 2 && s.std > 0) out[`${metric}_zscore`] = (x - s.mean) / s.std;
  if (s.n >= 3 && s.mad > 0) out[`${metric}_modified_zscore`] = 0.6745 * (x - s.median) / s.mad;
  else if (s.n >= 3 && s.mean_ad > 0) out[`${metric}_modified_zscore`] = (x - s.median) / (1.253314 * s.mean_ad);
  return out;
}

// A course names its segments, or has one per gate (segment k ends at gate k).
function segmentNames(course) {
  const named = course.segments && course.segments.length ? course.segments : course.gates;
  return named.map((s, i) => (course.segments && course.segments[i] && course.segments[i].name) || `segment ${i + 1}`);
}

function rowKey(r) { return `${r.session_id}|${r.rider_id}|${r.number}|${r.start}`; }

function matrixPage() {
  return {
    boxId: "", views: [], viewId: "", quadrants: {}, segmentNames: [], riders: {}, colours: {},
    rows: {}, session: null, pinnedSession: null, lastSeq: 0, segment: "all", focus: "", onlyFocus: false,
    trail: false, picked: null, online: false, status: null, replays: [], pin: "", message: "",
    source: null, latencies: [], received: {},

    async start() {
      const params = new URLSearchParams(location.search);
      this.pinnedSession = params.get("session");
      this.pin = localStorage.getItem("trackside-pin") || "";
      const cfg = await this.getJSON("/api/config");
      this.boxId = cfg.gateway.id;
      this.quadrants = cfg.web.chart.quadrants;
      const all = cfg.web.chart.views;
      const set = params.get("views");
      const wanted = set && cfg.web.view_sets[set] ? cfg.web.view_sets[set] : null;
      this.views = wanted ? wanted.map(id => all.find(v => v.id === id)).filter(Boolean) : all;
      this.viewId = (this.views[0] || {}).id || "";
      this.segmentNames = segmentNames(cfg.course);
      cfg.riders.forEach((r, i) => { this.riders[r.id] = r; this.colours[r.id] = PALETTE[i % PALETTE.length]; });
      this.makeChart();
      await this.reload();
      this.connect();
      this.poll();
      setInterval(() => this.poll(), 5000);
      window.trackside = this;  // for the browser tests
    },

    async getJSON(url, options) {
      const reply = await fetch(url, options);
      const body = await reply.json();
      if (!reply.ok) throw new Error(body.error || reply.statusText);
      return body;
    },

    async reload() {
      const q = this.pinnedSession ? `?session=${encodeURIComponent(this.pinnedSession)}` : "";
      const data = await this.getJSON("/api/results" + q);
      this.rows = {};
      this.session = data.session;
      // A replay whose files bring their own course (segments a lap) names its segments from it.
      if (data.course) this.segmentNames = segmentNames(data.course);
      this.lastSeq = data.last_seq || 0;
      for (const r of data.results) { r.key = rowKey(r); this.rows[r.key] = r; }
      this.redraw();
    },

    connect() {
      if (this.source) this.source.close();
      // EventSource reconnects by itself and sends Last-Event-ID; last_id covers the first connection.
      this.source = new EventSource(`/stream?last_id=${this.lastSeq}`);
      this.source.onopen = () => { this.online = true; };
      this.source.onerror = () => {
        this.online = false;
        // EventSource retries by itself after a dropped stream, but gives up for good after some
        // failures (an error answer while the box restarts): then start a new one from lastSeq.
        if (this.source.readyState === EventSource.CLOSED) setTimeout(() => this.connect(), 3000);
      };
      this.source.addEventListener("segment", (e) => this.onSegment(JSON.parse(e.data), Number(e.lastEventId)));
      this.source.addEventListener("resync", async () => {
        this.source.close();
        await this.reload();
        this.connect();
      });
    },

    onSegment(data, seq) {
      this.lastSeq = Math.max(this.lastSeq, seq);
      if (this.pinnedSession && data.session !== this.pinnedSession) return;
      if (data.session !== this.session) {
        if (this.session && data.session < this.session) return;  // an older session's catch-up
        this.session = data.session;  // a new session (e.g. the demo starting over): follow it
        this.rows = {};
        this.reload();  // its course (segment names) may differ; its results so far come with it
      }
      const r = data.result;
      r.key = rowKey(r);
      this.received[r.key] = (this.received[r.key] || 0) + 1;
      if ((r.flags || []).includes("withdrawn")) delete this.rows[r.key];
      else this.rows[r.key] = r;
      if (data.segment !== null && data.stats.time) {
        for (const row of Object.values(this.rows)) {
          if (row.segment !== data.segment) continue;
          Object.assign(row, scores("time", row.duration, data.stats.time), scores("power", row.power_avg, data.stats.power));
        }
      }
      this.redraw();
      const since = data.crossing_received || data.committed;
      if (since) this.latencies.push(Date.now() / 1000 - since);
    },

    async poll() {
      try {
        this.status = await this.getJSON("/api/status");
        this.replays = await this.getJSON("/api/replays");
      } catch (e) { this.status = null; }
    },

    view() { return this.views.find(v => v.id === this.viewId) || this.views[0]; },
    count() { return Object.keys(this.rows).length; },
    chart() { return CHART; },
    drawnPoints() { return CHART ? CHART.data.datasets.reduce((n, d) => n + d.data.length, 0) : 0; },
    sessionLabel() { return this.session ? this.session : ""; },
    riderList() { return Object.values(this.riders); },

    visible() {
      return Object.values(this.rows).filter(r =>
        (this.segment === "all" || String(r.segment) === this.segment) &&
        (!this.onlyFocus || !this.focus || r.rider_id === this.focus));
    },

    makeChart() {
      const ctx = document.getElementById("matrix");
      CHART = new Chart(ctx, {
        type: "scatter",
        data: { datasets: [] },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: {
            legend: { position: "bottom", labels: { boxWidth: 10 } },
            annotation: { annotations: {} },
            tooltip: { callbacks: { label: (c) => `${c.raw.row.name} ${c.raw.row.number}` } },
          },
          onClick: (_, elements) => {
            if (elements.length) this.picked = CHART.data.datasets[elements[0].datasetIndex].data[elements[0].index].row;
          },
        },
      });
    },

    redraw() {
      const view = this.view();
      if (!CHART || !view) return;
      const byRider = {};
      for (const r of this.visible()) {
        const x = r[view.xAxis.data], y = r[view.yAxis.data];
        if (x === null || x === undefined || y === null || y === undefined) continue;
        (byRider[r.rider_id] = byRider[r.rider_id] || []).push({ x, y, row: r });
      }
      const datasets = Object.entries(byRider).map(([id, points]) => {
        const dim = this.focus && id !== this.focus;
        const colour = this.colours[id] || "#555";
        const trail = this.trail && this.focus === id;
        points.sort((a, b) => (a.row.segment - b.row.segment) || (a.row.lap - b.row.lap));
        return {
          label: (this.riders[id] || { name: points[0].row.name }).name, data: points, showLine: trail,
          borderColor: colour, backgroundColor: dim ? colour + "33" : colour, pointRadius: dim ? 3 : 6,
          pointHoverRadius: 9,
        };
      });
      const o = CHART.options;
      o.scales = {
        x: { title: { display: true, text: view.xAxis.label }, min: view.xScale.min ?? undefined, max: view.xScale.max ?? undefined },
        y: { title: { display: true, text: view.yAxis.label }, min: view.yScale.min ?? undefined, max: view.yScale.max ?? undefined },
      };
      o.plugins.annotation.annotations = view.quadrants ? this.quadrantBoxes() : {};
      CHART.data.datasets = datasets;
      CHART.update("none");
    },

    quadrantBoxes() {
      const q = this.quadrants, boxes = {};
      const spec = { efficient: [undefined, 0, undefined, 0, "start", "end"], strong: [undefined, 0, 0, undefined, "start", "start"],
        costly: [0, undefined, 0, undefined, "end", "start"], easy: [0, undefined, undefined, 0, "end", "end"] };
      for (const [key, [xMin, xMax, yMin, yMax, xAlign, yAlign]] of Object.entries(spec)) {
        boxes[key] = { type: "box", xMin, xMax, yMin, yMax, backgroundColor: q[key].color + "26", borderWidth: 0,
          label: { display: true, content: q[key].label, position: { x: xAlign, y: yAlign }, color: q[key].color,
            font: { weight: "bold" } } };
      }
      return boxes;
    },

    quadrantOf(r) {
      const x = r.time_zscore, y = r.power_zscore;
      if (x === null || y === null || x === undefined || y === undefined || x === 0 || y === 0) return "";
      return x < 0 ? (y < 0 ? "efficient" : "strong") : (y > 0 ? "costly" : "easy");
    },

    latest() {
      return Object.values(this.rows).sort((a, b) => b.end - a.end).slice(0, 8);
    },

    strip() {
      const s = this.status && this.status.components;
      if (!s) return [{ label: "box", text: "unreachable", level: "bad" }];
      const items = [];
      const spool = s.spool || {};
      const k = s.kafka || {};
      const kept = k.enabled ? `${spool.backlog_rows ?? "?"} to send` : `${spool.last_seq ?? "?"} events kept`;
      items.push({ label: "spool", text: kept + (spool.full ? ", FULL" : ""), level: spool.full ? "bad" : "ok" });
      items.push(k.enabled ? { label: "uplink", text: k.connected ? "connected" : "down", level: k.connected ? "ok" : "warn" }
        : { label: "uplink", text: "off", level: "" });
      for (const [name, part] of Object.entries(s)) {
        if (!name.startsWith("source.")) continue;
        let text = part.state;
        // A timing receiver whose clock is off the box's: its crossings are moved onto the box's timeline.
        if (part.clock_aligned && part.clock_offset_s !== null && part.clock_offset_s !== undefined) {
          const off = -part.clock_offset_s, abs = Math.abs(off);
          const size = abs >= 3600 ? `${Math.floor(abs / 3600)} h ${Math.round((abs % 3600) / 60)} min` : abs >= 60 ? `${Math.round(abs / 60)} min` : `${abs.toFixed(1)} s`;
          text += `, receiver clock ${size} ${off > 0 ? "ahead" : "behind"} (corrected)`;
        }
        items.push({ label: name.slice(7), text, level: part.state === "connected" ? "ok" : "warn" });
      }
      for (const w of (s.health && s.health.warnings) || []) items.push({ label: "!", text: w, level: "bad" });
      const drift = Math.abs(Date.now() / 1000 - this.status.time);
      items.push({ label: "clock", text: new Date(this.status.time * 1000).toLocaleTimeString() + (drift > 5 ? ` (phone ${Math.round(drift)} s off)` : ""),
        level: drift > 5 ? "warn" : "" });
      return items;
    },

    savePin() { localStorage.setItem("trackside-pin", this.pin); },

    async control(session, action, factor) {
      try {
        const body = factor === undefined ? {} : { factor };
        await this.getJSON(`/api/replays/${encodeURIComponent(session)}/${action}`, {
          method: "POST", headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin }, body: JSON.stringify(body) });
        this.message = "";
        this.replays = await this.getJSON("/api/replays");
      } catch (e) { this.message = `refused: ${e.message}`; }
    },

    async startSample() {
      try {
        await this.getJSON("/api/replays", { method: "POST", headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin },
          body: JSON.stringify({ files: ["@sample"] }) });
        this.message = "";
        this.replays = await this.getJSON("/api/replays");
      } catch (e) { this.message = `refused: ${e.message}`; }
    },

    progress(r) { return r.duration_s ? Math.min(100, 100 * r.elapsed_s / r.duration_s) : 0; },
    speedLabel(f) { return f === 0 ? "max speed" : `×${+(1 / f).toFixed(2)}`; },
    fmt(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); },
  };
}
