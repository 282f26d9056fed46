-- registre PostgreSQL schema, version 1. Run by registre itself at start,
-- inside one transaction, in the schema the store is configured with.
-- No column holds a personal value in clear: records are sealed
-- (AES-256-GCM), indexed values are 64-bit blind HMACs.

-- Small named values: the master key id, the sealed checkpoint signing key,
-- the sealed legal holds.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per class (log): its next index, its latest reception time (never
-- goes back along a log) and its newest hold generation. Appends lock the
-- row (FOR UPDATE) for the length of their transaction.
CREATE TABLE logs (
    id        smallint PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    size      bigint NOT NULL DEFAULT 0,
    last_time bigint NOT NULL DEFAULT -9223372036854775808,
    hold_gen  integer NOT NULL DEFAULT 0
);

-- Data and index keys (64 bytes) wrapped by the master key, in the
-- embedded store's 108-byte key file format, under the label
-- `<class>/p<period>-<first index>` (a partition), `<class>/hold-<gen>`
-- (held traces) or `<class>/purged` (the purge history key). Deleting a
-- row shreds what it sealed.
CREATE TABLE data_keys (
    label   text PRIMARY KEY,
    wrapped bytea NOT NULL
);

-- The live partitions of `traces`: one per (class, period).
CREATE TABLE partitions (
    log         smallint NOT NULL REFERENCES logs (id),
    period      bigint NOT NULL,
    relname     text NOT NULL UNIQUE,
    first_index bigint NOT NULL,
    PRIMARY KEY (log, period)
);

-- The traces: partitioned by class (LIST on log), each class by period
-- (LIST on period, the reception period's start in µs). `record` is
-- nonce ‖ AES-256-GCM(salt ‖ JCS(trace)) ‖ tag, with the class and index as
-- associated data; actor, mailbox, patient are blind values under the
-- partition's index key, action an unkeyed hash of the public vocabulary.
CREATE TABLE traces (
    log         smallint NOT NULL,
    period      bigint NOT NULL,
    idx         bigint NOT NULL,
    received_at bigint NOT NULL,
    actor       bigint NOT NULL,
    action      bigint NOT NULL,
    mailbox     bigint,
    patient     bigint,
    record      bytea NOT NULL,
    PRIMARY KEY (log, period, idx)
) PARTITION BY LIST (log);
CREATE INDEX traces_actor ON traces (actor, idx);
CREATE INDEX traces_mailbox ON traces (mailbox, idx) WHERE mailbox IS NOT NULL;
CREATE INDEX traces_patient ON traces (patient, idx) WHERE patient IS NOT NULL;

-- Traces a legal hold kept when their partition was purged, re-sealed
-- under the key of their hold generation (`<class>/hold-<gen>`).
CREATE TABLE held (
    log         smallint NOT NULL REFERENCES logs (id),
    gen         integer NOT NULL,
    idx         bigint NOT NULL,
    received_at bigint NOT NULL,
    actor       bigint NOT NULL,
    action      bigint NOT NULL,
    mailbox     bigint,
    patient     bigint,
    record      bytea NOT NULL,
    PRIMARY KEY (log, idx)
);
CREATE INDEX held_gen ON held (log, gen, idx);

-- The Merkle log: every commitment (survives purge), the full tiles as
-- they complete, every signed checkpoint.
CREATE TABLE entries (
    log        smallint NOT NULL,
    idx        bigint NOT NULL,
    commitment bytea NOT NULL,
    PRIMARY KEY (log, idx)
);
CREATE TABLE tiles (
    log    smallint NOT NULL,
    level  smallint NOT NULL,
    n      bigint NOT NULL,
    hashes bytea NOT NULL,
    PRIMARY KEY (log, level, n)
);
CREATE TABLE checkpoints (
    log  smallint NOT NULL,
    size bigint NOT NULL,
    root bytea NOT NULL,
    note text NOT NULL,
    PRIMARY KEY (log, size)
);

-- The authenticated purge history: the embedded store's 64-byte records
-- (HMAC under the log's history key), in order.
CREATE TABLE purges (
    log    smallint NOT NULL REFERENCES logs (id),
    seq    integer NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (log, seq)
);
