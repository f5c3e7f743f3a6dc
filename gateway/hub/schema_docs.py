"""The hub's tables as an analyst reads them (#33): every table and column described in the database
itself (``COMMENT ON``, shown by ``\\d+`` and any SQL client), and the view ``results``: one row per
current segment result with times as ``timestamptz``, the session's and the segment's names, the
terrain, and the FTP and weight the session used. docs/hub-schema.md has the queries."""

from __future__ import annotations

COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "sessions": ("One row per session: a box's (kind live or replay) or the hub's course session (kind course).", {
        "session_id": "The session's id: the box's id, the UTC second it started and six random hex digits.",
        "gateway_id": "The box that recorded it ('course' for a course session the hub made).",
        "record": "The session record as the box last published it (course, riders as used, tags, files).",
        "record_seq": "The sequence number of the record message that was written last.",
        "kind": "live, replay, or course.",
        "name": "The session's name as the coach gave it.",
        "course_id": "The course it was ridden on: results are only compared on the same course.",
        "started": "When it started, unix seconds (to_timestamp(started) for a date).",
        "ended": "When it ended, unix seconds; NULL while running or when a box stopped without saying.",
        "first_seen": "When the hub first heard of it.",
        "updated": "When the hub last changed this row.",
        "spool_id": "The box's spool the session's events came from ('' for events of wire schema 2)."}),
    "power": ("Every power sample the boxes forwarded (and riders' files added): one row a sample.", {
        "gateway_id": "The box that heard it.",
        "seq": "The box's sequence number of the event in its spool.",
        "session_id": "The session it belongs to.",
        "rider_id": "The rider, as the box's pairing said (NULL: a meter paired with nobody).",
        "wall_time": "When the box received it, unix seconds on the box's clock.",
        "power": "Watts, as the box decoded it.",
        "cadence": "Revolutions a minute; NULL when the meter sends none.",
        "torque": "Newton metres, when the meter sends it.",
        "source": "Where it came from: ant:<device>, ble:<address>, replay:<file>, file:<file>, load.",
        "implausible": "The box flagged the value (kept, never averaged).",
        "spool_id": "The box's spool (spool 'files': added from a rider's file at the hub).",
        "raw": "The radio identity (ant:<device>:<page hex>, ble:..., file:...): the same sample at every box."}),
    "power_hwm": ("The highest sequence written per box, spool and rider: what is below is a repeat.", {
        "gateway_id": "The box.", "rider": "The rider.", "seq": "The highest sequence number written.",
        "spool_id": "The box's spool."}),
    "crossings": ("Every gate crossing the boxes' timing receivers gave.", {
        "gateway_id": "The box whose receiver heard it.", "seq": "The box's sequence number.",
        "session_id": "The session.", "rider_id": "The rider the transponder is paired with.",
        "wall_time": "When the box placed it, unix seconds (the receiver's time moved onto the box's clock).",
        "transponder": "The chip's id.", "gate": "The gate's id on the course.",
        "source": "The receiver (serial:<device>) or the file it was replayed from.",
        "lap": "The lap the timing system numbered, when it does.",
        "receiver_time": "The chip's own time of the crossing, unix seconds (exact for segment times).",
        "spool_id": "The box's spool."}),
    "segments": ("Every segment result ever sent, corrections and withdrawals included (the view "
                 "segments_current, or results, has the current ones).", {
        "hub_seq": "The hub's order of writing: the page's event id.",
        "gateway_id": "The box that computed it ('course' for the hub's merged course results).",
        "seq": "The box's sequence number.", "session_id": "The session.", "rider_id": "The rider.",
        "name": "The rider's name as the session used it.",
        "number": "lap.segment as text ('1.10' is lap 1, segment 10; '2.1-3' a span over missed gates).",
        "lap": "The lap.", "segment": "The segment of the course (1 from the start gate); NULL for a span.",
        "start": "When it started, unix seconds.", "end": "When it ended, unix seconds.",
        "duration": "Seconds, from the chips' own times.", "start_gate": "The gate it started at.",
        "end_gate": "The gate it ended at.", "power_avg": "Average power, watts.",
        "cadence_avg": "Average cadence, revolutions a minute.",
        "normalized_power": "Normalized Power, watts (np_window says which convention).",
        "intensity_factor": "NP over the FTP the session used.",
        "tss": "Training Stress Score of the segment (its gate-to-gate duration).",
        "watts_per_kg": "Average power over the weight the session used.",
        "samples": "Power samples inside the segment.",
        "coverage": "Share of the segment's seconds with power (0-1).",
        "flags": "power_gap, no_power, missed_gate, short_segment, withdrawn...",
        "np_window": "segment (30-s mean restarted at the gate) or ride (the ride-long mean).",
        "withdrawn": "This row withdraws the result of the same session, rider, number and start.",
        "received": "When the hub wrote it.", "spool_id": "The box's spool.",
        "boxes": "The boxes a course result rests on (NULL for a box's own result)."}),
    "dead_letters": ("Messages the hub could not use, with their raw bytes and the reason.", {
        "id": "Row id.", "topic": "Kafka topic.", "partition": "Kafka partition.", "offset": "Kafka offset.",
        "raw": "The message as it came.", "reason": "Why it was set aside.", "at": "When."}),
    "spools": ("Each box's spools as the hub saw them (a reinstalled box starts a new one).", {
        "gateway_id": "The box.", "spool_id": "The spool.", "first_seen": "First event received.",
        "last_seen": "Last event received.", "first_wall": "Earliest event time, unix seconds.",
        "last_wall": "Latest event time, unix seconds.", "events": "Events received."}),
    "course_members": ("Which box session belongs to which course session.", {
        "session_id": "The box's session.", "course_session_id": "The hub's course session.",
        "gateway_id": "The box."}),
    "schema_migrations": ("The schema versions applied to this database.", {
        "version": "The version.", "applied_at": "When."}),
}

# The view's columns for people, shared by every version of it (migrations 5 and 6).
RESULTS_COLUMNS = """c.session_id, s.name AS session_name, s.kind AS session_kind, c.gateway_id AS box, s.course_id,
           c.rider_id, c.name AS rider_name, c.number, c.lap, c.segment,
           s.record->'course'->'segments'->(c.segment - 1)->>'name' AS segment_name,
           s.record->'course'->'segments'->(c.segment - 1)->>'terrain' AS terrain,
           to_timestamp(c.start) AS start_at, to_timestamp(c."end") AS end_at, c.duration AS duration_s,
           c.power_avg AS power_avg_w, c.cadence_avg AS cadence_avg_rpm, c.normalized_power AS normalized_power_w,
           c.intensity_factor, c.tss, c.watts_per_kg AS w_per_kg, c.coverage, c.flags, c.np_window"""

RESULTS_VIEW = f"""
    CREATE VIEW results AS
    SELECT {RESULTS_COLUMNS},
           (SELECT (r->>'ftp_w')::double precision FROM jsonb_array_elements(s.record->'riders') r
            WHERE r->>'id' = c.rider_id LIMIT 1) AS ftp_w_used,
           (SELECT (r->>'weight_kg')::double precision FROM jsonb_array_elements(s.record->'riders') r
            WHERE r->>'id' = c.rider_id LIMIT 1) AS weight_kg_used,
           c.hub_seq
    FROM segments_current c JOIN sessions s USING (session_id);
    COMMENT ON VIEW results IS 'One row per current segment result, for people: times as timestamptz, the '
        'session''s and the segment''s names, the terrain, the FTP and weight the session used.';
    COMMENT ON VIEW segments_current IS 'The current segment results: the latest row of each session, rider, '
        'number and start, withdrawn ones left out.';
    CREATE INDEX segments_start_at ON segments (to_timestamp(start));
"""


def migration() -> str:
    """Migration 5: the comments, the view ``results`` and the index a week's results need."""
    return RESULTS_VIEW + comments(COMMENTS)


def comments(tables: dict[str, tuple[str, dict[str, str]]]) -> str:
    """``COMMENT ON`` each table and column of ``tables``."""
    out = [""]
    for table, (about, columns) in tables.items():
        out.append(f"COMMENT ON TABLE {table} IS {_quote(about)};")
        out += [f'COMMENT ON COLUMN {table}."{column}" IS {_quote(text)};' for column, text in columns.items()]
    return "\n".join(out)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
