-- Failed sign-ins per account and per address, shared by every node: growing delays, then a
-- temporary lock that doubles with each further failure.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
