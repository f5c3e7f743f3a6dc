/* What the page says of where a result's power came from: how much of the segment was heard
   (a hollow mark under metrics.min_coverage), which boxes heard it, and on the hub the boxes of a
   course session with their clocks. Mixed into the matrix page (app.js). */
"use strict";

function coursePage() {
  return {
    hubUrl: "", minCoverage: 0.8, heardBy: {}, askedHeardBy: "",

    markOf(mark, row, dim) {
      if (!mark.full) return "circle";
      if (row.power_partial) return dim ? mark.hollowFaded : mark.hollow;
      return dim ? mark.faded : mark.full;
    },

    // "power 35 % heard", and what follows from it when under the threshold.
    heardText(r) {
      if (r.power_avg === null || r.power_avg === undefined) return "no power heard";
      const share = `power ${Math.round(100 * r.coverage)} % heard`;
      return r.power_partial ? `${share}: not in the power z-scores (under ${Math.round(100 * this.minCoverage)} %)` : share;
    },

    boxesText(r) {
      const key = `${r.rider_id}|${r.number}`;
      const boxes = this.heardBy[key];
      if (this.boxId !== "hub") return `Heard by this box (${this.boxId})` + (this.hubUrl ? "; the course view merges every box." : ".");
      if (!boxes && this.askedHeardBy !== key) this.askHeardBy(key);  // a result newer than the last load
      return boxes && boxes.length ? `Heard by ${boxes.join(", ")}.` : "";
    },

    async askHeardBy(key) {
      this.askedHeardBy = key;
      try {
        const got = await this.getJSON(`/api/heard-by?session=${encodeURIComponent(this.session || "")}`);
        this.heardBy = { ...this.heardBy, ...got };
      } catch (e) { /* the strip says why the hub does not answer */ }
    },

    partialNote() {
      if (!this.visible().some(r => r.power_partial)) return "";
      return `◌ Hollow mark: power heard for under ${Math.round(100 * this.minCoverage)} % of the segment. ` +
        "Its time counts as any; its power is scored but kept out of everyone's power z-scores.";
    },

    // The boxes of the course session on screen, as the hub's course engine places their clocks.
    courseBoxes() {
      const course = this.status && this.status.components && this.status.components.course;
      const session = course && course.sessions && course.sessions[this.session];
      if (!session) return [];
      return Object.entries(session.boxes || {}).sort().map(([box, c]) => {
        const ms = Math.abs(c.offset_s) >= 1 ? `${c.offset_s.toFixed(3)} s` : `${Math.round(c.offset_s * 1000)} ms`;
        const basis = !c.linked ? "⚠ no message shared with the other boxes: its own clock"
          : c.reference ? "the reference" : `${c.shared} shared messages` + (c.via.length ? ` (via ${c.via.join(", ")})` : "");
        return { box, linked: c.linked, clock: c.reference ? "reference" : `${c.offset_s >= 0 ? "+" : ""}${ms}`,
          drift: c.reference || !c.linked ? "–" : `${c.drift_ppm.toFixed(1)} ppm`, basis };
      });
    },
  };
}
