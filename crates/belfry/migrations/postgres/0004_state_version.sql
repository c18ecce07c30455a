-- A user's state version: every read-state and preferences change takes the next one, in the
-- transaction that stores it. Live frames carry it, so that a late or replayed change can be
-- told from a newer one, and nodes compare it with what their connections were sent.
ALTER TABLE user_seqs ADD COLUMN state_version BIGINT NOT NULL DEFAULT 0;
