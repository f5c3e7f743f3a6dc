/* The riders' own recordings into a session that is over (set-up page): pick several files at
   once, see what became of each, and where the box asks (whose file, or its clock), answer and
   add that file again. Mixed into the set-up page (setup.js). */
"use strict";

function sessionFiles() {
  return {
    filesSession: "", picked: [], fileResults: [], adding: false, fileChoice: {}, fileOffset: {},

    pickFiles(event) { this.picked = Array.from(event.target.files || []); this.fileResults = []; this.messages.files = ""; },
    pickedText() { return this.picked.length ? `${this.picked.length} file(s): ${this.picked.map(f => f.name).join(", ")}` : "no file chosen"; },
    chooseRider(name, event) { this.fileChoice = { ...this.fileChoice, [name]: event.target.value }; },
    giveOffset(name, event) { this.fileOffset = { ...this.fileOffset, [name]: event.target.value }; },
    statusWord(f) { return { added: "✔ added", "already added": "= already in", choose: "? your choice", refused: "✖ refused" }[f.status] || f.status; },

    async addFiles(only) {
      this.okay.files = false;
      if (!this.pin) { this.messages.files = "Enter the admin PIN first (at the top)."; return; }
      const session = this.filesSession || (this.sessions[0] || {}).session;
      if (!session || !this.picked.length) { this.messages.files = "Choose a session and the files first."; return; }
      const form = new FormData();
      for (const f of this.picked) if (!only || f.name === only) form.append("files", f, f.name);
      for (const [name, rider] of Object.entries(this.fileChoice)) if (rider) form.append(`rider:${name}`, rider);
      for (const [name, s] of Object.entries(this.fileOffset)) if (s !== "") form.append(`offset:${name}`, s);
      this.adding = true;
      this.messages.files = "Adding… (the files are matched, aligned and every segment computed again)";
      try {
        const out = await this.getJSON(`/api/sessions/${encodeURIComponent(session)}/files`,
          { method: "POST", body: form, headers: { "X-Admin-Token": this.pin } });
        const byName = Object.fromEntries(this.fileResults.map(f => [f.name, f]));
        for (const f of out.files) byName[f.name] = f;
        this.fileResults = Object.values(byName);
        const added = out.files.filter(f => f.status === "added").length;
        this.messages.files = `${added} of ${out.files.length} added` + (added ? ": the session's results are corrected." : ".");
        this.okay.files = added > 0;
      } catch (e) {
        this.messages.files = e.status === 401 ? "Wrong admin PIN: check it and try again." : `Not done: ${e.message}`;
      } finally { this.adding = false; }
    },
  };
}
