-- Failed sign-ins per account and per address, shared by every node: growing delays, then a
-- temporary lock that doubles with each further failure.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
