"""Migration 6: what the analysts' queries need (#33), measured by tools/bench schema.

Riders across boxes: each box has its own rider book, so its ``rider_id`` names a rider on that box
only ("r01" may be Anna on one box and Marco on another). The hub keeps one row per rider per
session (``session_riders``, filled by a trigger from the session record, so the box writer, the
course sessions and old records all follow one rule) with a ``rider_key``: the person. The key is
the name as typed with letter case and spacing folded ('name:anna keller'), which is what a coach
types the same way on every box; a rider with no name is known by id ('id:r01'), as before.
``rider_key('Anna Keller')`` gives an analyst the key of a name. Case is folded by ICU's root
locale, not the database's (a hub's database in the C locale leaves "Ř" as it is).

Current results as a flag: ``segments_current`` was DISTINCT ON over every segment row, which
PostgreSQL cannot filter or join through except on its key columns (a rider's history read the
season's segments twice, a week's results hash-joined the whole table). Now an insert marks the
rows it replaces ``superseded`` (a trigger, under the writers' lock), and the view is a filter.

The power index: every reader asks for one rider's samples of one session (the course merge, a
rider's file, W' balance, an analyst's rider across sessions), so (session, rider, time) replaces
(session, time) and the partial (session, rider) index: one index on the largest table, not two."""

from __future__ import annotations

from gateway.hub.schema_docs import RESULTS_COLUMNS, comments

COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "session_riders": ("One row per rider per session, from the session record: who the rider is across boxes "
                       "(rider_key) and the FTP, weight and squad the session used.", {
                           "session_id": "The session.",
                           "rider_id": "The rider's id in the box's rider book (another box may use it for "
                                       "someone else).",
                           "name": "The rider's name as the session used it.",
                           "ftp_w": "The FTP the session used, watts, as the coach typed it.",
                           "weight_kg": "The weight the session used, kilograms.",
                           "squad": "The squad the rider was in that day.",
                           "rider_key": "The person across boxes and sessions: 'name:' and the name with case "
                                        "and spacing folded, or 'id:' and the id for a rider with no name; "
                                        "rider_key('Anna Keller') gives the key of a name."}),
}

# A number only when it reads as one: a stranger's record never aborts the writer's transaction.
_NUMBER = r"'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'"


def _number(field: str) -> str:
    return f"CASE WHEN r->>'{field}' ~ {_NUMBER} THEN (r->>'{field}')::double precision END"


MIGRATION = f"""
    CREATE FUNCTION rider_key(name text, rider_id text DEFAULT NULL) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN nullif(btrim(name), '') IS NULL THEN 'id:' || rider_id
                    ELSE 'name:' || lower(regexp_replace(btrim(name), '\\s+', ' ', 'g') COLLATE "und-x-icu") END $$;
    CREATE TABLE session_riders (
        session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,
        rider_id text NOT NULL,
        name text,
        ftp_w double precision,
        weight_kg double precision,
        squad text,
        rider_key text GENERATED ALWAYS AS (rider_key(name, rider_id)) STORED,
        PRIMARY KEY (session_id, rider_id)
    );
    CREATE INDEX session_riders_key ON session_riders (rider_key);
    CREATE FUNCTION session_riders_from_record() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM session_riders WHERE session_id = NEW.session_id;
        INSERT INTO session_riders (session_id, rider_id, name, ftp_w, weight_kg, squad)
        SELECT DISTINCT ON (r->>'id') NEW.session_id, r->>'id', r->>'name', {_number('ftp_w')},
               {_number('weight_kg')}, r->>'squad'
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(NEW.record->'riders') = 'array'
                                       THEN NEW.record->'riders' ELSE '[]'::jsonb END) r
        WHERE jsonb_typeof(r) = 'object' AND r->>'id' IS NOT NULL;
        RETURN NULL;
    END $$;
    CREATE TRIGGER session_riders_sync AFTER INSERT OR UPDATE OF record ON sessions
        FOR EACH ROW EXECUTE FUNCTION session_riders_from_record();
    UPDATE sessions SET record = record WHERE record IS NOT NULL;
    CREATE INDEX power_session_rider_time ON power (session_id, rider_id, wall_time);
    DROP INDEX power_session;
    DROP INDEX power_session_rider;
    CREATE INDEX segments_key ON segments (session_id, rider_id, number, start, hub_seq);
    ALTER TABLE segments ADD COLUMN superseded boolean NOT NULL DEFAULT false;
    UPDATE segments s SET superseded = true WHERE EXISTS (
        SELECT 1 FROM segments later WHERE later.session_id = s.session_id AND later.rider_id = s.rider_id
        AND later.number = s.number AND later.start = s.start AND later.hub_seq > s.hub_seq);
    CREATE FUNCTION segments_supersede() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Serialised with every writer of segments (hub.writer.SEGMENT_LOCK): the row with the
        -- highest hub_seq of its session, rider, number and start is the current one, whichever
        -- transaction committed first.
        PERFORM pg_advisory_xact_lock(7412);
        UPDATE segments s SET superseded = (s.hub_seq <> m.top)
        FROM (SELECT max(hub_seq) AS top FROM segments WHERE session_id = NEW.session_id
              AND rider_id = NEW.rider_id AND number = NEW.number AND start = NEW.start) m
        WHERE s.session_id = NEW.session_id AND s.rider_id = NEW.rider_id AND s.number = NEW.number
          AND s.start = NEW.start AND s.superseded <> (s.hub_seq <> m.top);
        RETURN NULL;
    END $$;
    CREATE TRIGGER segments_current_sync AFTER INSERT ON segments
        FOR EACH ROW EXECUTE FUNCTION segments_supersede();
    CREATE OR REPLACE VIEW segments_current AS
        SELECT * FROM segments WHERE NOT withdrawn AND NOT superseded;
    COMMENT ON COLUMN segments.superseded IS 'A later row of the same session, rider, number and start replaces '
        'this one (segments_current leaves it out).';
    CREATE OR REPLACE VIEW results AS
    SELECT {RESULTS_COLUMNS},
           x.ftp_w AS ftp_w_used, x.weight_kg AS weight_kg_used, c.hub_seq,
           x.rider_key, x.squad
    FROM segments_current c JOIN sessions s USING (session_id)
    LEFT JOIN session_riders x ON x.session_id = c.session_id AND x.rider_id = c.rider_id;
    COMMENT ON VIEW results IS 'One row per current segment result, for people: times as timestamptz, the '
        'session''s and the segment''s names, the terrain, the FTP and weight the session used, the rider '
        'across boxes (rider_key).';
    COMMENT ON FUNCTION rider_key(text, text) IS 'The person a name stands for across boxes and sessions.';
"""


def migration() -> str:
    """Migration 6: ``session_riders``, ``rider_key``, the view ``results`` with them, the power index."""
    return MIGRATION + comments(COMMENTS)
