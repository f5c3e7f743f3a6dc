/* The coach's page: the efficiency matrix, live over Server-Sent Events. Served by the box. */
"use strict";

// Chart.js must not be wrapped in Alpine's reactive proxy: the chart and the riders' marks
// (canvases) live outside the component.
let CHART = null;
const MARKS = {};
const HIT_PX = 32;  // a fingertip: a tap this close to a point may mean it
const SURE_PX = 12;  // a tap this close to one point and no other means that one (10 px of aim, 2 of rounding)
const MARK_PX = 26;

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

// Whether results of session ``next`` move the page off ``current`` (neither chosen by the coach):
// the coach's live session keeps the page while a (looping demo) replay plays; otherwise the newer
// session of the same kind follows on. Replays' ids start "replay-" (pipeline/session.py).
function takesOver(current, next) {
  const replay = id => id.startsWith("replay-");
  if (replay(current) !== replay(next)) return replay(current);
  return next > current;
}

function rowKey(r) { return `${r.session_id}|${r.rider_id}|${r.number}|${r.start}`; }

// Lap numbers beside the points of a rider's trail, and a pen beside points with a coach's note.
const lapNumbers = {
  id: "lapNumbers",
  afterDatasetsDraw(chart) {
    const ctx = chart.ctx;
    chart.data.datasets.forEach((d, i) => {
      if (d.noted && d.noted.length) {
        ctx.save();
        ctx.font = "bold 15px system-ui, sans-serif";
        ctx.fillStyle = "#14202b";
        chart.getDatasetMeta(i).data.forEach((el, k) => { if (d.noted[k]) ctx.fillText("✎", el.x + 11, el.y - 9); });
        ctx.restore();
      }
      const beyond = d.data.map(p => (p.beyondX !== undefined || p.beyondY !== undefined ? p : null));
      if (beyond.some(Boolean)) {
        ctx.save();
        ctx.font = "bold 13px system-ui, sans-serif";
        ctx.fillStyle = "#14202b";
        chart.getDatasetMeta(i).data.forEach((el, k) => {
          const p = beyond[k];
          if (!p) return;
          // Off the axes: the real value beside the mark, with the way it lies.
          const text = [p.beyondX !== undefined ? `${p.beyondX > 0 ? "→" : "←"} ${p.beyondX.toFixed(1)}` : "",
            p.beyondY !== undefined ? `${p.beyondY > 0 ? "↑" : "↓"} ${p.beyondY.toFixed(1)}` : ""].filter(Boolean).join(" ");
          ctx.textAlign = p.beyondX > 0 ? "right" : "left";
          ctx.fillText(text, el.x + (p.beyondX > 0 ? -15 : 15), el.y + (p.beyondY > 0 ? 22 : -16));
        });
        ctx.restore();
      }
      if (!d.lapLabels) return;
      ctx.save();
      ctx.font = "bold 14px system-ui, sans-serif";
      ctx.lineWidth = 4;
      ctx.strokeStyle = "#ffffff";
      ctx.fillStyle = "#14202b";
      chart.getDatasetMeta(i).data.forEach((el, k) => {
        const text = `lap ${d.data[k].row.lap}`;
        ctx.strokeText(text, el.x + 15, el.y - 12);
        ctx.fillText(text, el.x + 15, el.y - 12);
      });
      ctx.restore();
    });
  },
};

function matrixPage() {
  return {
    ...liveness(),
    ...coursePage(),
    boxId: "", canControl: false, addFiles: false, views: [], viewId: "", quadrants: {}, segmentNames: [], riders: {},
    rows: {}, session: null, pinnedSession: null, followSession: null, sessionChoice: "", sessions: [],
    lastSeq: 0, segment: "all", focus: "", onlyFocus: false, trail: false, picked: null, online: false,
    sourceOpen: false, lastEventAt: 0, heartbeatS: 10, now: Date.now(), status: null, statusAt: 0, boxOffset: 0,
    notes: {}, noteDraft: "", noteMessage: "", replays: [], pin: "", message: "", rowMessages: {}, starting: false, confirmUntil: 0, announcement: "",
    lastLevel: "", extent: { x: 2, y: 2 }, drawn: 0, source: null, latencies: [], received: {},
    // On a phone the chart comes first: filters one tap away, the status strip on one line until tapped.
    filtersOpen: window.innerWidth >= 900, stripOpen: false, choices: [], zHelp: false, noteOk: false, gridSeg: 1,
    grid: { cells: {}, laps: [], riders: [] },

    async start() {
      const params = new URLSearchParams(location.search);
      this.pinnedSession = params.get("session");
      this.sessionChoice = this.pinnedSession || "";
      this.pin = localStorage.getItem("trackside-pin") || "";
      const cfg = await this.getJSON("/api/config");
      this.boxId = cfg.mode === "hub" ? "hub" : cfg.gateway.id;
      this.canControl = Boolean(cfg.web.control) && cfg.mode !== "hub";
      this.addFiles = cfg.mode === "hub" && Boolean(cfg.web.files);
      this.heartbeatS = cfg.web.heartbeat_s || 10;
      this.hubUrl = cfg.mode !== "hub" ? cfg.web.hub_url || "" : "";
      this.minCoverage = (cfg.metrics || {}).min_coverage ?? 0.8;
      this.quadrants = cfg.web.chart.quadrants;
      const all = cfg.web.chart.views;
      const set = params.get("views");
      const wanted = set && cfg.web.view_sets[set] ? cfg.web.view_sets[set] : null;
      this.views = wanted ? wanted.map(id => all.find(v => v.id === id)).filter(Boolean) : all;
      this.viewId = (this.views[0] || {}).id || "";
      this.segmentNames = segmentNames(cfg.course);
      cfg.riders.forEach(r => { this.riders[r.id] = r; });
      this.assignMarks();
      Chart.defaults.font.size = 15;
      Chart.defaults.color = "#14202b";
      this.makeChart();
      await this.reload();
      this.connect();
      this.poll();
      this.loadSessions();
      setInterval(() => this.poll(), 5000);
      setInterval(() => this.loadSessions(), 30000);
      setInterval(() => this.tick(), 1000);
      window.trackside = this;  // for the browser tests
      // The sheet's height settles after it opens (its rows fill in): the tapped point is kept in
      // sight whenever it changes.
      new ResizeObserver(() => this.keepVisible(this.picked || this.choices[0])).observe(document.getElementById("detail"));
    },

    getJSON(url, options) { return fetchJSON(url, options); },

    // The session's marks come with its results (gateway.results.marks: the report draws the same);
    // a rider new since then (arrived live) gets the next in the same cycle.
    assignMarks() {
      const known = Object.values(this.riders);
      const initials = initialsFor(known);
      const given = this.sessionMarks || {};
      let next = Object.keys(given).length;
      known.forEach(r => {
        const server = given[r.id];
        const text = server ? server.initials : initials[r.id];
        if (MARKS[r.id] && MARKS[r.id].text === text && (!server || MARKS[r.id].colour === server.colour)) return;
        const { colour, shape } = server || markFor(next++);
        const full = riderMark(colour, shape, text, MARK_PX, false);
        MARKS[r.id] = { colour, shape, text, full, faded: riderMark(colour, shape, text, MARK_PX, true),
          hollow: riderMark(colour, shape, text, MARK_PX, false, true),
          hollowFaded: riderMark(colour, shape, text, MARK_PX, true, true), icon: full.toDataURL() };
      });
    },

    async reload() {
      const wanted = this.pinnedSession || this.followSession;
      const data = await this.getJSON("/api/results" + (wanted ? `?session=${encodeURIComponent(wanted)}` : ""));
      this.rows = {};
      if (data.session !== this.session) this.resetAxes();
      this.session = data.session;
      // A replay whose files bring their own course (segments a lap) names its segments from it.
      if (data.course) this.segmentNames = segmentNames(data.course);
      this.lastSeq = Math.max(this.lastSeq, data.last_seq || 0);
      this.notes = {};
      for (const n of data.notes || []) this.notes[`${n.rider_id}|${n.number}`] = n.text;
      this.heardBy = data.heard_by || {};
      this.sessionMarks = data.marks || {};
      let added = false;
      for (const r of data.results) {
        r.key = rowKey(r);
        this.rows[r.key] = r;
        if (!this.riders[r.rider_id]) { this.riders[r.rider_id] = { id: r.rider_id, name: r.name }; added = true; }
      }
      if (added || data.marks) this.assignMarks();
      if (this.session && !this.sessions.some(s => s.session === this.session)) this.loadSessions();
      this.redraw();
    },

    async loadSessions() {
      try { this.sessions = await this.getJSON("/api/sessions"); } catch (e) { /* the status shows why */ }
    },

    connect() {
      if (this.source) this.source.close();
      // EventSource reconnects by itself and sends Last-Event-ID; last_id covers the first connection.
      this.source = new EventSource(`/stream?last_id=${this.lastSeq}`);
      this.source.onopen = () => { this.sourceOpen = this.online = true; this.lastEventAt = Date.now(); this.tick(); };
      this.source.onerror = () => {
        this.sourceOpen = this.online = false;
        this.tick();
        // EventSource retries by itself after a dropped stream, but gives up for good after some
        // failures (an error answer while the box restarts): then start a new one from lastSeq.
        if (this.source.readyState === EventSource.CLOSED) setTimeout(() => this.connect(), 3000);
      };
      this.source.addEventListener("heartbeat", () => { this.lastEventAt = Date.now(); this.tick(); });
      this.source.addEventListener("segment", (e) => {
        this.lastEventAt = Date.now();
        this.onSegment(JSON.parse(e.data), Number(e.lastEventId));
      });
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
        if (this.session && !takesOver(this.session, data.session)) return;
        this.followSession = null;
        this.session = data.session;  // a new session (e.g. the demo starting over): follow it
        this.rows = {};
        this.unpick();
        this.reload();  // its course (segment names) may differ; its results so far come with it
      }
      const r = data.result;
      r.key = rowKey(r);
      this.received[r.key] = (this.received[r.key] || 0) + 1;
      if ((r.flags || []).includes("withdrawn")) delete this.rows[r.key];
      else this.rows[r.key] = r;
      if (!this.riders[r.rider_id]) { this.riders[r.rider_id] = { id: r.rider_id, name: r.name }; this.assignMarks(); }
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
        this.statusAt = Date.now();
        this.boxOffset = this.status.time * 1000 - Date.now();
        if (this.canControl) this.replays = await this.getJSON("/api/replays");
      } catch (e) { /* the link pill and the strip say so */ }
    },

    view() { return this.views.find(v => v.id === this.viewId) || this.views[0]; },
    count() { return Object.keys(this.rows).length; },
    chart() { return CHART; },
    drawnPoints() { return this.drawn; },
    riderList() { return Object.values(this.riders); },

    sessionInfo() { return this.sessions.find(s => s.session === this.session); },
    sessionTitle(s) {
      const at = s.started || s.first;
      const when = at ? new Date(at * 1000).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }) : "";
      return [s.name || s.session, s.gateway && this.boxId === "hub" ? s.gateway : "", when].filter(Boolean).join(" · ");
    },
    sessionLabel() {
      const s = this.sessionInfo();
      if (s) return this.sessionTitle(s);
      const r = this.replays.find(x => x.session === this.session);
      return r ? `replay of ${this.replayName(r)}` : (this.session ? "" : "no session yet");
    },
    sessionState() {
      const r = this.replays.find(x => x.session === this.session);
      if (!r) return "";
      return r.state === "paused" ? "paused" : r.state === "playing" ? `replay ${this.speedLabel(r.factor)}` : "";
    },

    chooseSession() {
      this.pinnedSession = this.sessionChoice || null;
      this.followSession = null;
      const url = new URL(location.href);
      if (this.pinnedSession) url.searchParams.set("session", this.pinnedSession); else url.searchParams.delete("session");
      history.replaceState(null, "", url);
      this.session = null;
      this.unpick();
      this.reload();
    },

    visible() {
      return Object.values(this.rows).filter(r =>
        (this.segment === "all" || String(r.segment) === this.segment) &&
        (!this.onlyFocus || !this.focus || r.rider_id === this.focus));
    },

    filterNote() {
      const parts = [];
      if (this.segment !== "all") parts.push(`segment ${this.segment} only`);
      if (this.onlyFocus && this.focus) parts.push(`${(this.riders[this.focus] || {}).name} only`);
      return parts.length ? `(${parts.join(", ")})` : "";
    },

    trailHint() {
      if (!this.trail || !this.focus) return "";
      return this.segment === "all" ? "Choose a segment to see this rider's laps on it, numbered." : "";
    },

    legend() {
      const present = new Set(Object.values(this.rows).map(r => r.rider_id));
      return this.riderList().filter(r => present.has(r.id) && MARKS[r.id])
        .map(r => ({ id: r.id, name: r.name, icon: MARKS[r.id].icon }));
    },

    highlight(id) {
      this.focus = this.focus === id ? "" : id;
      if (!this.focus) this.onlyFocus = this.trail = false;
      this.redraw();
    },

    makeChart() {
      const ctx = document.getElementById("matrix");
      CHART = new Chart(ctx, {
        type: "scatter",
        data: { datasets: [] },
        plugins: [lapNumbers],
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          events: ["click"],  // a tap picks a point (below); hover tooltips only hide the chart on a phone
          layout: { padding: { top: 4, right: 8 } },
          plugins: { legend: { display: false }, tooltip: { enabled: false }, annotation: { annotations: {} } },
          onClick: (event) => this.tap(event.x, event.y),
        },
      });
    },

    // A tap finds its point: within SURE_PX of exactly one point, that one; where marks overlap, a
    // choice of every result under the finger ("3 results here"), so the one meant is always offered.
    tap(x, y) {
      const near = [];
      CHART.data.datasets.forEach((d, i) => {
        if (d.ring) return;
        CHART.getDatasetMeta(i).data.forEach((el, k) => {
          const dist = Math.hypot(el.x - x, el.y - y);
          if (dist <= HIT_PX) near.push({ row: d.data[k].row, dist });
        });
      });
      if (!near.length) return;
      near.sort((a, b) => a.dist - b.dist);
      const sure = near.filter(n => n.dist <= SURE_PX);
      const under = near.filter(n => n.dist <= MARK_PX / 2 + SURE_PX);
      if (sure.length === 1 || under.length <= 1) this.pick((sure[0] || near[0]).row);
      else this.offer(under.map(n => n.row));
    },

    offer(rows) {
      this.picked = null;
      this.choices = rows;
      this.redraw();
      this.$nextTick(() => this.keepVisible(rows[0]));
    },

    choiceText(r) {
      return `${r.name} · lap ${r.lap}, ${r.segment ? "segment " + r.segment : "segments " + this.segmentSpan(r)} · ` +
        `${this.clock(r.duration)}` + (r.power_avg === null || r.power_avg === undefined ? "" : ` · ${this.fmt(r.power_avg, 0)} W`);
    },

    pick(r) {
      this.choices = [];
      this.picked = r; this.noteDraft = this.noteOf(r); this.noteMessage = ""; this.noteOk = false;
      this.redraw();
      this.$nextTick(() => this.keepVisible(r));
    },

    // The tapped point stays in sight above the sheet: the page scrolls it up when the sheet would cover it.
    keepVisible(r) {
      const sheet = document.getElementById("detail");
      if (!CHART || !r || !sheet || sheet.offsetHeight === 0) return;  // (fixed: no offsetParent even when shown)
      document.body.style.paddingBottom = `${sheet.offsetHeight + 16}px`;  // room to scroll the chart up
      let el = null;
      CHART.data.datasets.forEach((d, i) => {
        if (d.ring) return;
        d.data.forEach((p, k) => { if (p.row.key === r.key) el = CHART.getDatasetMeta(i).data[k]; });
      });
      if (!el) return;
      const y = CHART.canvas.getBoundingClientRect().top + el.y;
      const top = sheet.getBoundingClientRect().top;
      if (y + MARK_PX > top - 8) window.scrollBy(0, y + MARK_PX + 8 - top);
      else if (y - MARK_PX < 0) window.scrollBy(0, y - MARK_PX - 8);
    },

    noteOf(r) { return (r && this.notes[`${r.rider_id}|${r.number}`]) || ""; },

    async saveNote() {
      const r = this.picked;
      if (!r) return;
      if (!this.pin) { this.noteMessage = "Enter the admin PIN first (in the replay section)."; return; }
      try {
        const notes = await this.getJSON("/api/notes", { method: "POST", headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin },
          body: JSON.stringify({ session: r.session_id, rider_id: r.rider_id, number: r.number, text: this.noteDraft }) });
        this.notes = {};
        for (const n of notes) this.notes[`${n.rider_id}|${n.number}`] = n.text;
        this.noteMessage = this.noteDraft.trim() ? "Note saved." : "Note removed.";
        this.noteOk = true;
        this.redraw();
      } catch (e) { this.noteMessage = this.refusal(e); this.noteOk = false; }
    },
    unpick() {
      this.picked = null;
      this.choices = [];
      document.body.style.paddingBottom = "";
      if (CHART) this.redraw();
    },

    resetAxes() { this.extent = { x: 2, y: 2 }; },

    redraw() {
      const view = this.view();
      this.buildGrid();
      if (!CHART || !view) return;
      const zView = Boolean(view.quadrants);
      // Live scores replace a result's row: the selection stays on the result, not the old row.
      if (this.picked && this.rows[this.picked.key]) this.picked = this.rows[this.picked.key];
      const byRider = {};
      const shown = this.visible();
      for (const r of shown) {
        const x = r[view.xAxis.data], y = r[view.yAxis.data];
        if (x === null || x === undefined || y === null || y === undefined) continue;
        (byRider[r.rider_id] = byRider[r.rider_id] || []).push({ x, y, row: r });
      }
      if (zView) {
        const all = Object.values(byRider).flat();
        this.extent = { x: growExtent(this.extent.x, all.map(p => p.x)), y: growExtent(this.extent.y, all.map(p => p.y)) };
        for (const p of all) pinInside(p, this.extent);
      }
      const trailOn = this.trail && this.focus && this.segment !== "all";
      const datasets = Object.entries(byRider).map(([id, points]) => {
        const dim = this.focus && id !== this.focus;
        const mark = MARKS[id] || { colour: "#263238" };
        const trail = trailOn && this.focus === id;
        points.sort((a, b) => (a.row.lap - b.row.lap) || (a.row.end - b.row.end));
        return {
          label: (this.riders[id] || { name: points[0].row.name }).name, data: points, showLine: trail, lapLabels: trail,
          noted: points.map(p => Boolean(this.noteOf(p.row))),
          borderColor: mark.colour, borderWidth: 2, backgroundColor: mark.colour,
          pointStyle: points.map(p => this.markOf(mark, p.row, dim)), pointRadius: MARK_PX / 2, pointHitRadius: HIT_PX,
          order: dim ? 2 : 1,
        };
      });
      this.drawn = datasets.reduce((n, d) => n + d.data.length, 0);
      const picked = this.picked ? shown.find(r => r.key === this.picked.key) : null;
      const at = picked ? datasets.flatMap(d => d.data).find(p => p.row.key === picked.key) : null;
      if (at) {
        datasets.push({ label: "selected", ring: true, data: [{ x: at.x, y: at.y, row: picked }],
          pointStyle: "circle", pointRadius: MARK_PX / 2 + 6, borderColor: "#14202b", borderWidth: 3,
          backgroundColor: "rgba(0,0,0,0)", order: 0 });
      }
      const o = CHART.options;
      // Room at the edges for a whole mark (the W/kg view clipped its outermost riders); whole ticks.
      const axis = (scale, extent, title) => ({
        title: { display: true, text: title, font: { size: 15 } }, grace: zView ? 0 : "8%",
        ticks: zView ? { stepSize: 1 } : {},
        min: scale.min ?? (zView ? -extent : undefined), max: scale.max ?? (zView ? extent : undefined),
        grid: { color: (c) => (zView && c.tick.value === 0 ? "#5b6b78" : "#e1e7ec") },
      });
      o.scales = {
        x: axis(view.xScale || {}, this.extent.x, zView ? `← faster    ${view.xAxis.label}    slower →` : view.xAxis.label),
        y: axis(view.yScale || {}, this.extent.y, zView ? `less power ←    ${view.yAxis.label}    → more power` : view.yAxis.label),
      };
      o.plugins.annotation.annotations = zView && this.drawn ? this.quadrantBoxes() : {};
      CHART.data.datasets = datasets;
      CHART.update("none");
      if (zView && this.drawn) {
        Object.assign(o.plugins.annotation.annotations, this.quadrantLabels());
        CHART.update("none");
      }
    },

    quadrantSpec() {
      // [x from, x to, y from, y to] in z, and the chart's outer corner of each quadrant.
      return { efficient: [-Infinity, 0, -Infinity, 0, "left", "bottom"], strong: [-Infinity, 0, 0, Infinity, "left", "top"],
        costly: [0, Infinity, 0, Infinity, "right", "top"], easy: [0, Infinity, -Infinity, 0, "right", "bottom"] };
    },

    quadrantBoxes() {
      const boxes = {};
      for (const [key, [x0, x1, y0, y1]] of Object.entries(this.quadrantSpec())) {
        boxes[key] = { type: "box", xMin: isFinite(x0) ? x0 : undefined, xMax: isFinite(x1) ? x1 : undefined,
          yMin: isFinite(y0) ? y0 : undefined, yMax: isFinite(y1) ? y1 : undefined,
          backgroundColor: this.quadrants[key].color + "1f", borderWidth: 0, drawTime: "beforeDatasetsDraw" };
      }
      return boxes;
    },

    // Labels on the quadrants that are on screen, in a corner free of points (none free: no label).
    quadrantLabels() {
      const area = CHART.chartArea, sx = CHART.scales.x, sy = CHART.scales.y;
      const points = CHART.data.datasets.flatMap((d, i) => CHART.getDatasetMeta(i).data.map(el => ({ x: el.x, y: el.y })));
      const ctx = CHART.ctx;
      ctx.save();
      ctx.font = "bold 15px system-ui, sans-serif";
      const labels = {};
      for (const [key, [x0, x1, y0, y1, outerX, outerY]] of Object.entries(this.quadrantSpec())) {
        const left = Math.max(area.left, isFinite(x0) ? sx.getPixelForValue(x0) : area.left);
        const right = Math.min(area.right, isFinite(x1) ? sx.getPixelForValue(x1) : area.right);
        const top = Math.max(area.top, isFinite(y1) ? sy.getPixelForValue(y1) : area.top);
        const bottom = Math.min(area.bottom, isFinite(y0) ? sy.getPixelForValue(y0) : area.bottom);
        if (right - left < 20 || bottom - top < 20) continue;  // not on screen
        const text = `${QUADRANT_WORDS[key].icon} ${this.quadrants[key].label}`;
        const size = { w: ctx.measureText(text).width + 14, h: 28 };
        const at = placeLabel({ left, right, top, bottom, outerX, outerY }, size, points, 4);
        if (!at) continue;
        labels[`label-${key}`] = { type: "label", xValue: sx.getValueForPixel(at.x), yValue: sy.getValueForPixel(at.y),
          position: { x: "start", y: "start" }, content: text, color: "#14202b", font: { size: 15, weight: "bold" },
          backgroundColor: "rgba(255,255,255,0.88)", borderColor: this.quadrants[key].color, borderWidth: 2,
          borderRadius: 4, padding: { x: 6, y: 4 }, drawTime: "afterDatasetsDraw", quadrant: key, box: { ...at, ...size } };
      }
      ctx.restore();
      return labels;
    },

    // Within half a standard deviation on time or on power, a result is about average: no quadrant's word.
    quadrantOf(r) { return nearAverage(r.time_zscore, r.power_zscore) ? "neutral" : quadrantOfScores(r.time_zscore, r.power_zscore); },
    quadrantBadge(q) {
      if (q === "neutral") return `${QUADRANT_WORDS.neutral.icon} Average`;
      return q ? `${QUADRANT_WORDS[q].icon} ${this.quadrants[q].label}` : "not scored yet";
    },
    quadrantMeaning(q) { return q ? QUADRANT_WORDS[q].meaning : ""; },
    clock(v) { return mmss(v); },

    segmentName(r) { return r.segment ? this.segmentNames[r.segment - 1] || "" : ""; },
    placeOf(r) {
      if (!r.segment) return `Lap ${r.lap}, segments ${this.segmentSpan(r)} (a gate was missed)`;
      const name = this.segmentName(r);
      return `Lap ${r.lap}, segment ${r.segment}` + (name ? ` (${name})` : "");
    },
    segmentSpan(r) { return String(r.number).split(".")[1] || ""; },

    latest() { return this.visible().sort((a, b) => b.end - a.end).slice(0, 8); },

    markIcon(r) { return (MARKS[r.rider_id] || {}).icon || ""; },

    // The lap grid: the chosen segment (or the one tapped in its tabs), every rider x every lap.
    gridSegment() { return this.segment !== "all" ? Number(this.segment) : this.gridSeg; },
    gridTitle() {
      const k = this.gridSegment();
      return `segment ${k}` + (this.segmentNames[k - 1] ? ` (${this.segmentNames[k - 1]})` : "");
    },
    // Built once per redraw (not per cell and per render: a phone redraws at every result).
    buildGrid() {
      const seg = this.gridSegment(), cells = {}, laps = new Set(), present = new Set();
      for (const r of Object.values(this.rows)) {
        if (r.segment !== seg) continue;
        cells[`${r.rider_id}|${r.lap}`] = r;
        laps.add(r.lap);
        present.add(r.rider_id);
      }
      this.grid = { cells, laps: [...laps].sort((a, b) => a - b), riders: this.riderList().filter(r => present.has(r.id)) };
    },
    chooseGridSegment(k) { this.gridSeg = k; this.buildGrid(); },
    gridLaps() { return this.grid.laps; },
    gridRiders() { return this.grid.riders; },
    gridCell(rider, lap) { return this.grid.cells[`${rider}|${lap}`] || null; },

    chartLabel() {
      const v = this.view();
      return `Efficiency matrix${v ? ", " + v.name : ""}: ${this.drawn} points. The table of latest segments below lists them.`;
    },

    emptyText() {
      if (this.count() === 0) return "Waiting for the first segment results…";
      const v = this.view();
      if (v && v.quadrants) return "Waiting for results to compare: a z-score needs at least two riders on the same segment.";
      return "No results match these filters.";
    },

    savePin() { localStorage.setItem("trackside-pin", this.pin); },

    refusal(e) {
      if (e.status === 401) return "Wrong admin PIN: check it and try again.";
      if (e.status === 429) return "Too many wrong PINs: wait a few minutes, then try again.";
      return `The box refused: ${e.message}`;
    },

    async control(session, action, factor) {
      if (!this.pin) { this.rowMessages = { ...this.rowMessages, [session]: "Enter the admin PIN first (above)." }; return; }
      try {
        const body = factor === undefined ? {} : { factor };
        await this.getJSON(`/api/replays/${encodeURIComponent(session)}/${action}`, {
          method: "POST", headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin }, body: JSON.stringify(body) });
        this.rowMessages = { ...this.rowMessages, [session]: "" };
        this.replays = await this.getJSON("/api/replays");
      } catch (e) { this.rowMessages = { ...this.rowMessages, [session]: this.refusal(e) }; }
    },

    startLabel() {
      if (this.starting) return "starting…";
      return this.confirmUntil > this.now ? "tap again to start another replay" : "replay the sample";
    },

    // One replay per tap: the button waits for the box's answer, and a second replay while one
    // plays needs a second tap.
    async startSample() {
      if (this.starting) return;
      if (!this.pin) { this.message = "Enter the admin PIN first (the box above)."; document.getElementById("pin").focus(); return; }
      if (this.activeReplays().length && this.confirmUntil <= Date.now()) {
        this.confirmUntil = Date.now() + 5000;
        this.now = Date.now();
        this.message = "A replay is already playing: tap again within 5 s to start another.";
        return;
      }
      this.starting = true;
      this.confirmUntil = 0;
      try {
        const started = await this.getJSON("/api/replays", { method: "POST", headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin },
          body: JSON.stringify({ files: ["@sample"] }) });
        this.message = "";
        this.replays = await this.getJSON("/api/replays");
        if (!this.pinnedSession && started.session) {  // show the new replay at once, not at its first result
          this.followSession = started.session;
          this.session = null;
          this.unpick();
          await this.reload();
          this.loadSessions();
        }
      } catch (e) { this.message = this.refusal(e); } finally { this.starting = false; }
    },

    activeReplays() { return this.replays.filter(r => r.state === "playing" || r.state === "paused" || r.state === "ready"); },
    finishedReplays() { return this.replays.filter(r => !this.activeReplays().includes(r)); },
    replayName(r) { return (r.files || []).join(", ") || r.session; },
    progress(r) { return r.duration_s ? Math.min(100, 100 * r.elapsed_s / r.duration_s) : 0; },
    // What the page's attributes need of the browser's globals: the CSP build of Alpine reads only
    // the component (no 'unsafe-eval' in the page's Content-Security-Policy).
    progressRounded(r) { return Math.round(this.progress(r)); },
    setSpeed(r, event) {
      const factor = Number(event.target.value);
      event.target.value = "";
      return this.control(r.session, "speed", factor);
    },
    rescale() { this.resetAxes(); this.redraw(); },
    focusChanged() {
      if (!this.focus) this.onlyFocus = this.trail = false;
      this.redraw();
    },
    toggleFilters() { this.filtersOpen = !this.filtersOpen; },
    filtersLabel() {
      const parts = [];
      if (this.segment !== "all") parts.push(`segment ${this.segment}`);
      if (this.focus) parts.push((this.riders[this.focus] || {}).name || this.focus);
      return parts.length ? `Filters: ${parts.join(", ")}` : "Filters";
    },
    debriefHref() { return "/debrief?session=" + encodeURIComponent(this.session || ""); },
    origin() { return window.location.origin; },
    speedLabel(f) { return f === 0 ? "max speed" : `×${+(1 / f).toFixed(2)}`; },
    fmt(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); },
  };
}

// The CSP build of Alpine (no 'unsafe-eval') sees only components registered by name.
document.addEventListener("alpine:init", () => Alpine.data("matrixPage", matrixPage));
