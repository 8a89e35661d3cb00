-- The network a dynamic registration came from (an IPv4 address, or an IPv6 /64 by default):
-- the per-address registration cap counts by it, so one IPv6 subscriber is one address.
ALTER TABLE clients ADD COLUMN registered_net TEXT;
CREATE INDEX clients_registered_net ON clients (registered_net, created_at);

-- Redirect URIs a person approved for a client on the consent page (which names the host the
-- browser goes back to), by their registered form. Errors found before any interaction are
-- redirected automatically only to these and to pre-registered clients' URIs; any other is
-- offered as a link on an error page (RFC 9700 §4.11.2: no open redirector).
CREATE TABLE approved_redirects (
    client_id    TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    approved_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, redirect_uri)
);
