/* The coach's morning: start the session, pair meters and chips, riders' values, review. */
"use strict";

function setupPage() {
  return {
    ...sessionFiles(),
    // Written here, not in the attribute: the CSP build of Alpine reads no "??".
    historyLine(h) { return `${h.from}: ${h.ftp_w ?? "–"} W, ${h.weight_kg ?? "–"} kg`; },
    boxId: "", hub: false, pin: "", current: {}, riders: [], radios: {}, sessions: [], edits: {}, endArmed: false, ended: null,
    form: { name: "", riders: [], tags: "", notes: "" }, newRider: { id: "", name: "" },
    messages: { session: "", pairing: "", riders: "", review: "", files: "" }, okay: {},

    async start() {
      this.pin = localStorage.getItem("trackside-pin") || "";
      const cfg = await this.getJSON("/api/config");
      this.boxId = cfg.gateway.id;
      this.hub = cfg.mode === "hub";
      window.setup = this;  // for the browser tests
      if (this.hub) { await this.loadSessions(); return; }  // the hub: riders' files only (no live session here)
      this.loadPlan();
      await Promise.all([this.loadSession(), this.loadRiders(), this.loadRadios(), this.loadSessions()]);
      setInterval(() => this.loadRadios(), 2000);
      setInterval(() => this.loadSession(), 10000);
    },

    getJSON(url, options) { return fetchJSON(url, options); },

    // Every change needs the PIN; the answer (or the refusal, in words) lands next to the control.
    async send(section, url, body) {
      this.okay[section] = false;
      if (!this.pin) { this.messages[section] = "Enter the admin PIN first (at the top)."; return null; }
      try {
        const out = await this.getJSON(url, { method: "POST", body: JSON.stringify(body || {}),
          headers: { "Content-Type": "application/json", "X-Admin-Token": this.pin } });
        this.messages[section] = "";
        this.okay[section] = true;
        return out;
      } catch (e) {
        this.messages[section] = e.status === 401 ? "Wrong admin PIN: check it and try again."
          : e.status === 429 ? "Too many wrong PINs: wait a few minutes." : `Not done: ${e.message}`;
        return null;
      }
    },

    savePin() { localStorage.setItem("trackside-pin", this.pin); },
    clock(t) { return t ? new Date(t * 1000).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }) : ""; },
    today() { return new Date().toISOString().slice(0, 10); },

    async loadSession() { try { this.current = await this.getJSON("/api/session"); } catch (e) { /* shown below */ } },
    // Sessions with results only: an automatic session nothing was recorded in is nothing to review.
    async loadSessions() {
      try { this.sessions = (await this.getJSON("/api/sessions")).filter(s => s.results > 0).reverse(); } catch (e) { /* none */ }
    },
    debriefOf(s) { return "/debrief?session=" + encodeURIComponent(s.session); },
    async loadRadios() { try { this.radios = await this.getJSON("/api/radios"); } catch (e) { /* kept */ } },
    async loadRiders() {
      this.riders = await this.getJSON("/api/riders");
      for (const r of this.riders) {
        if (!this.edits[r.id]) this.edits[r.id] = { from: this.today(), ftp_w: r.ftp_w ?? "", weight_kg: r.weight_kg ?? "" };
      }
      if (!this.form.riders.length) this.form.riders = this.riders.map(r => r.id);
    },

    async startSession() {
      const tags = this.form.tags.split(/[\s,]+/).filter(Boolean);
      const planned = this.usePlan ? this.planRun() : null;
      const body = { name: this.form.name, riders: this.form.riders, tags, notes: this.form.notes };
      if (planned) body.rider_tags = Object.fromEntries(planned.map(p => [p.rider, [`${this.plan.tag}=${p.setup}`]]));
      const out = await this.send("session", "/api/session/start", body);
      if (out) {
        this.current = out;
        this.messages.session = `Started: ${out.name}.`;
        if (planned) this.advancePlan();
      }
    },

    // A planned equipment test (made on the debrief page): who rides which setup on its next run.
    plan: null, usePlan: true,
    loadPlan() { try { this.plan = JSON.parse(localStorage.getItem("trackside-plan") || "null"); } catch (e) { this.plan = null; } },
    planRun() {
      if (!this.plan) return null;
      return Object.entries(this.plan.order).map(([rider, setups]) => ({ rider, setup: setups[this.plan.next] }));
    },
    planText() {
      const run = this.planRun();
      if (!run) return "";
      return `Planned test (${this.plan.tag}), run ${this.plan.next + 1} of ${this.plan.runs}: ` + run.map(p => `${p.rider} ${p.setup}`).join(", ");
    },
    advancePlan() {
      this.plan.next += 1;
      if (this.plan.next >= this.plan.runs) { localStorage.removeItem("trackside-plan"); this.plan = null; return; }
      localStorage.setItem("trackside-plan", JSON.stringify(this.plan));
    },

    // Weather ends sessions without warning: one tap arms, the second (within 5 s) ends.
    async endSession() {
      if (!this.endArmed) { this.endArmed = true; setTimeout(() => { this.endArmed = false; }, 5000); return; }
      this.endArmed = false;
      const out = await this.send("session", "/api/session/end");
      if (out) { this.messages.session = `Ended: ${out.name}.`; this.ended = out; await this.loadSession(); this.loadSessions(); }
    },

    groups() {
      const r = this.radios;
      return [
        { kind: "ant", title: "ANT+ power meters", items: r.ant || [], empty: `ANT+ stick: ${r.ant_state || "off"}` },
        { kind: "ble", title: "Bluetooth power meters", items: r.ble || [], empty: `Bluetooth: ${r.ble_state || "off"}` },
        { kind: "chip", title: "Timing chips", items: (r.chips || []), empty: "No chip is paired and none has crossed a gate yet." },
      ];
    },
    deviceName(d) {
      if (d.key.startsWith("chip:")) return `chip ${d.id}`;
      if (d.key.startsWith("ant:")) return `ANT+ ${d.id}`;
      return d.name || d.id;
    },
    deviceDetail(d) {
      const parts = [];
      if (d.manufacturer || d.model) parts.push([d.manufacturer, d.model].filter(Boolean).join(" "));
      if (d.key.startsWith("ble:") && d.name) parts.push(d.id);
      if (d.rssi !== undefined && d.rssi !== null) parts.push(`${d.rssi} dBm`);
      if (d.battery) parts.push(`battery ${d.battery}`);
      if (d.power_w !== undefined && d.power_w !== null) parts.push(`${Math.round(d.power_w)} W`);
      if (d.crossings) parts.push(`${d.crossings} ${d.crossings === 1 ? "crossing" : "crossings"} without a rider`);
      parts.push(d.rider_name ? `is ${d.rider_name}'s` : "nobody's");
      return parts.join(" · ");
    },

    // Said with the device's name as the list shows it ("Stages L 12345 is Lea's now"), not its address.
    async pair(kind, d, rider) {
      const out = await this.send("pairing", "/api/pair", { kind, id: d.id, rider: rider || null });
      if (out) {
        const device = this.deviceName(d);
        const name = (this.riders.find(r => r.id === rider) || {}).name;
        const before = (this.riders.find(r => r.id === out.before) || {}).name;
        this.messages.pairing = rider ? `${device} is ${name}'s now` + (before && out.before !== rider ? ` (it was ${before}'s).` : ".") : `${device} is nobody's now.`;
      }
      await this.loadRadios();
    },

    profileLine(r) {
      return `${r.ftp_w ?? "–"} W · ${r.weight_kg ?? "–"} kg` + (r.added ? " · added here" : "");
    },
    configuredLine(r) {
      const c = r.configured;
      return c && (c.ftp_w !== null || c.weight_kg !== null) ? `configuration: ${c.ftp_w ?? "–"} W, ${c.weight_kg ?? "–"} kg` : "";
    },
    // The message says what the values were, so that a typo is seen at once.
    async saveProfile(r) {
      const e = this.edits[r.id];
      const was = `${r.ftp_w ?? "–"} W, ${r.weight_kg ?? "–"} kg`;
      const out = await this.send("riders", `/api/riders/${encodeURIComponent(r.id)}/profile`,
        { ftp_w: e.ftp_w === "" ? null : Number(e.ftp_w), weight_kg: e.weight_kg === "" ? null : Number(e.weight_kg), from: e.from });
      if (out) { this.messages.riders = `${r.name}: ${out.ftp_w ?? "–"} W, ${out.weight_kg ?? "–"} kg from ${out.from} (was ${was}).`; await this.loadRiders(); }
    },
    async rename(r, name) {
      const out = await this.send("riders", "/api/riders", { id: r.id, name });
      if (out) { this.riders = out; this.messages.riders = `Renamed to ${name}.`; }
    },
    async addRider() {
      const out = await this.send("riders", "/api/riders", { id: this.newRider.id.trim(), name: this.newRider.name });
      if (out) { this.messages.riders = `${this.newRider.name} added.`; this.newRider = { id: "", name: "" }; await this.loadRiders(); }
    },

    async review(session) {
      const out = await this.send("review", "/api/replays", { session, speed: 0.05 });
      if (out) location.href = `/?session=${encodeURIComponent(out.session)}`;
    },
  };
}

// The CSP build of Alpine (no 'unsafe-eval') sees only components registered by name.
document.addEventListener("alpine:init", () => Alpine.data("setupPage", setupPage));
