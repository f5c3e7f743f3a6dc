"""The hub's PostgreSQL schema, versioned: a table of applied versions, each version one migration in
one transaction; a database newer than this hub is refused in one line.

Power samples grow by about 1.4 M rows an hour per box. They carry one index, on (session, rider,
time): every reader asks for one rider's samples of a session, which are one range of it whatever the
table's size (measured in tools/bench at tens of millions of rows), and every further index would
cost the hub a third of its ingest rate.
Duplicates (a box resends what was in flight at a crash; Kafka redelivers after a hub is killed)
are caught without a unique index: a box's spool sends each rider's events in sequence order, so an
event whose sequence number is above the highest already written for its box, spool and rider
(``power_hwm``, updated in the same transaction) is new; one at or below it is looked up through
that index, since it may also be one the box set aside and offered again later. Retention, when it
is needed, is a ``DELETE`` by session or a later migration to monthly range partitions.
Segment results keep every message (history, withdrawals) with a ``hub_seq`` from a sequence, the
page's SSE id; ``segments_current`` is one current result per rider, session and segment.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError
from gateway.hub import schema_docs, schema_queries

MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE sessions (
            session_id text PRIMARY KEY,
            gateway_id text NOT NULL,
            record jsonb,
            record_seq bigint,
            kind text,
            name text,
            course_id text,
            started double precision,
            ended double precision,
            first_seen timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE power (
            gateway_id text NOT NULL,
            seq bigint NOT NULL,
            session_id text NOT NULL,
            rider_id text,
            wall_time double precision NOT NULL,
            power double precision,
            cadence double precision,
            torque double precision,
            source text,
            implausible boolean NOT NULL DEFAULT false
        );
        CREATE INDEX power_session ON power (session_id, wall_time);
        CREATE TABLE power_hwm (
            gateway_id text NOT NULL,
            rider text NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (gateway_id, rider)
        );
        CREATE TABLE crossings (
            gateway_id text NOT NULL,
            seq bigint NOT NULL,
            session_id text NOT NULL,
            rider_id text,
            wall_time double precision NOT NULL,
            transponder text NOT NULL,
            gate text NOT NULL,
            source text,
            lap integer,
            receiver_time double precision,
            PRIMARY KEY (gateway_id, seq)
        );
        CREATE INDEX crossings_session ON crossings (session_id, wall_time);
        CREATE TABLE segments (
            hub_seq bigserial UNIQUE,
            gateway_id text NOT NULL,
            seq bigint NOT NULL,
            session_id text NOT NULL,
            rider_id text NOT NULL,
            name text,
            number text NOT NULL,
            lap integer NOT NULL,
            segment integer,
            start double precision NOT NULL,
            "end" double precision NOT NULL,
            duration double precision NOT NULL,
            start_gate text,
            end_gate text,
            power_avg double precision,
            cadence_avg double precision,
            normalized_power double precision,
            intensity_factor double precision,
            tss double precision,
            watts_per_kg double precision,
            samples integer NOT NULL,
            coverage double precision NOT NULL,
            flags text[] NOT NULL DEFAULT '{}',
            np_window text NOT NULL DEFAULT 'segment',
            withdrawn boolean NOT NULL DEFAULT false,
            received timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, seq)
        );
        CREATE INDEX segments_session ON segments (session_id, hub_seq);
        CREATE INDEX segments_rider ON segments (rider_id, hub_seq);
        CREATE VIEW segments_current AS
            SELECT * FROM (
                SELECT DISTINCT ON (session_id, rider_id, number, start) *
                FROM segments ORDER BY session_id, rider_id, number, start, hub_seq DESC
            ) latest WHERE NOT withdrawn;
        CREATE TABLE dead_letters (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            partition integer NOT NULL,
            "offset" bigint NOT NULL,
            raw bytea,
            reason text NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (topic, partition, "offset")
        );
    """,
    # Events are a box's spool's (wire schema 3): a reinstalled box numbers from 1 again under the
    # same gateway id, in a new spool, and its events must not be taken for the old spool's. Events
    # of schema 2 have spool ''. ``spools`` lists each box's spools as the hub saw them (a box that
    # changed spool; two that interleave: two boxes configured alike).
    2: """
        ALTER TABLE sessions ADD COLUMN spool_id text NOT NULL DEFAULT '';
        ALTER TABLE power ADD COLUMN spool_id text NOT NULL DEFAULT '';
        ALTER TABLE power_hwm ADD COLUMN spool_id text NOT NULL DEFAULT '';
        ALTER TABLE power_hwm DROP CONSTRAINT power_hwm_pkey, ADD PRIMARY KEY (gateway_id, spool_id, rider);
        ALTER TABLE crossings ADD COLUMN spool_id text NOT NULL DEFAULT '';
        ALTER TABLE crossings DROP CONSTRAINT crossings_pkey, ADD PRIMARY KEY (gateway_id, spool_id, seq);
        ALTER TABLE segments ADD COLUMN spool_id text NOT NULL DEFAULT '';
        ALTER TABLE segments DROP CONSTRAINT segments_pkey, ADD PRIMARY KEY (gateway_id, spool_id, seq);
        CREATE TABLE spools (
            gateway_id text NOT NULL,
            spool_id text NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now(),
            first_wall double precision,
            last_wall double precision,
            events bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (gateway_id, spool_id)
        );
        INSERT INTO spools (gateway_id, spool_id, first_wall, last_wall, events)
            SELECT gateway_id, '', min(wall_time), max(wall_time), count(*) FROM crossings GROUP BY gateway_id;
    """,
    # Wire schema 4: a power sample's radio identity (the same sample heard by several boxes).
    3: """
        ALTER TABLE power ADD COLUMN raw text;
    """,
    # The course (#30): boxes sharing a course id and a time form one course session at the hub,
    # whose merged results are written beside the boxes' own (segments, gateway_id 'course'), with
    # the boxes each rests on. ``course_members`` says which box session belongs to which.
    4: """
        CREATE TABLE course_members (
            session_id text PRIMARY KEY,
            course_session_id text NOT NULL,
            gateway_id text NOT NULL
        );
        CREATE INDEX course_members_course ON course_members (course_session_id);
        ALTER TABLE segments ADD COLUMN boxes text[];
        CREATE SEQUENCE course_results;
        CREATE INDEX power_session_rider ON power (session_id, rider_id) WHERE raw IS NOT NULL;
        CREATE INDEX crossings_session_rider ON crossings (session_id, rider_id);
        CREATE OR REPLACE VIEW segments_current AS
            SELECT * FROM (
                SELECT DISTINCT ON (session_id, rider_id, number, start) *
                FROM segments ORDER BY session_id, rider_id, number, start, hub_seq DESC
            ) latest WHERE NOT withdrawn;
    """,
    # For analysts (#33): every table and column described, the view ``results`` (hub.schema_docs).
    5: schema_docs.migration(),
    # Riders across boxes (session_riders, rider_key) and the power index its readers use (hub.schema_queries).
    6: schema_queries.migration(),
}
SCHEMA_VERSION = max(MIGRATIONS)


class DatabaseError(GatewayError):
    """The hub's database cannot be used as it is (newer than this hub, unreachable, refused)."""

    http_status = 503


def migrate(conn: Any) -> int:
    """Bring the database to this hub's schema; returns the version it is at. ``conn``: psycopg."""
    with conn.transaction():
        # One hub migrates at a time: a second one starting together waits here, then finds it done.
        # The lock comes first: two concurrent CREATE TABLE IF NOT EXISTS can both try to create
        # the table and one fails on PostgreSQL's catalogue (a unique violation on pg_type).
        conn.execute("SELECT pg_advisory_xact_lock(7411)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise DatabaseError(f"the database has schema version {version}, newer than this hub's {SCHEMA_VERSION}",
                                where="hub database", hint="upgrade this hub (every hub of the group)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[target])
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (target,))
            version = target
    return version
