/* What the page says about its link to the box and about the box: the pill (how old the news is),
   the announcements for screen readers, and the status strip. Mixed into the matrix page. */
"use strict";

function liveness() {
  return {
    // One statement about the link, from the age of the last thing the box sent: the stream's
    // events and heartbeats, or an answer to the status poll.
    tick() {
      this.now = Date.now();
      const level = this.link().level;
      if (this.lastLevel && level !== this.lastLevel) {
        if (level === "bad") this.announcement = "Connection to the box lost: the page is reconnecting.";
        else if (this.lastLevel === "bad" && level === "ok") this.announcement = "Back online: the page is live again.";
      }
      this.lastLevel = level;
    },

    link() {
      const last = Math.max(this.lastEventAt, 0);
      if (!last) return { level: "warn", text: "◌ connecting…" };
      const age = Math.max(0, Math.round((this.now - last) / 1000));
      const beat = this.heartbeatS;
      if (this.sourceOpen && age <= beat + 2) return { level: "ok", text: `● live · ${age} s ago` };
      if (age <= 2 * beat + 2) {
        return { level: "warn", text: this.sourceOpen ? `◐ no news for ${age} s` : `◐ reconnecting · last update ${age} s ago` };
      }
      return { level: "bad", text: `○ offline · last update ${this.ago(age)} ago · reconnecting` };
    },

    ago(s) { return s >= 3600 ? `${Math.floor(s / 3600)} h` : s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`; },

    strip() {
      const s = this.status && this.status.components;
      const since = this.statusAt ? new Date(this.statusAt).toLocaleTimeString() : "";
      if (!s) return [{ label: "box", text: this.statusAt ? `not answering since ${since}` : "connecting…", level: this.lastEventAt ? "bad" : "" }];
      const items = [];
      // Offline, what the strip knew is old news: said once ("as of"), nothing shown as connected,
      // the box's clock no longer ticking.
      const offline = this.link().level === "bad";
      if (offline) items.push({ label: "as of", text: since, level: "bad" });
      if (s.hub) {
        const hub = s.hub;
        items.push({ label: "database", text: hub.db_connected ? "connected" : "away", level: hub.db_connected ? "ok" : "bad" });
        items.push({ label: "behind", text: `${Object.values(hub.lag || {}).flatMap(Object.values).reduce((a, b) => a + b, 0)} messages`, level: "" });
      }
      const spool = s.spool;
      if (spool) {
        const k = s.kafka || {};
        const kept = k.enabled ? `${spool.backlog_rows ?? "?"} to send` : `${spool.last_seq ?? "?"} events kept`;
        items.push({ label: "spool", text: kept + (spool.full ? ", FULL" : ""), level: spool.full ? "bad" : "ok" });
        items.push(!k.enabled ? { label: "uplink", text: "off", level: "" } : offline ? { label: "uplink", text: "unknown", level: "" }
          : { label: "uplink", text: k.connected ? "connected" : "down", level: k.connected ? "ok" : "warn" });
      }
      for (const [name, part] of Object.entries(s)) {
        if (!name.startsWith("source.")) continue;
        let text = part.state;
        // A timing receiver whose clock is off the box's: its crossings are moved onto the box's timeline.
        if (part.clock_aligned && part.clock_offset_s !== null && part.clock_offset_s !== undefined) {
          const off = -part.clock_offset_s, abs = Math.abs(off);
          const size = abs >= 3600 ? `${Math.floor(abs / 3600)} h ${Math.round((abs % 3600) / 60)} min` : abs >= 60 ? `${Math.round(abs / 60)} min` : `${abs.toFixed(1)} s`;
          text += `, receiver clock ${size} ${off > 0 ? "ahead" : "behind"} (corrected)`;
        }
        if (offline) items.push({ label: name.slice(7), text: "unknown", level: "" });
        else items.push({ label: name.slice(7), text, level: part.state === "connected" ? "ok" : "warn" });
      }
      // Red only for what needs a hand now; a clock not synchronised is amber: it says what it
      // affects, and segment times do not depend on it.
      for (const w of (s.health && s.health.warnings) || []) {
        const advisory = w.startsWith("clock not synchronised");
        items.push({ label: advisory ? "⚠" : "!", text: w, level: advisory ? "warn" : "bad" });
      }
      // The box's clock, ticking while the page hears from it; a phone clock off the box's is a small chip.
      if (!offline) items.push({ label: "clock", text: new Date(this.now + this.boxOffset).toLocaleTimeString(), level: "" });
      const drift = Math.abs(this.boxOffset) / 1000;
      if (drift > 5) items.push({ label: "phone", text: `clock ${Math.round(drift)} s off`, level: "warn",
        detail: "This phone's clock differs from the box's; the box's times are the ones recorded." });
      return items;
    },
  };
}
