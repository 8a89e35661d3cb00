-- Browser sessions that hold only pending authorization requests (nobody signed in) record the
-- address that created them, so one address can hold only so many at once
-- (`pending_sessions_per_address`). NULL for every other session.
ALTER TABLE web_sessions ADD COLUMN pending_from TEXT;
CREATE INDEX web_sessions_pending_from ON web_sessions (pending_from) WHERE pending_from IS NOT NULL;
