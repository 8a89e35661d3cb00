-- The network a dynamic registration came from (an IPv4 address, or an IPv6 /64 by default):
-- the per-address registration cap counts by it, so one IPv6 subscriber is one address.
ALTER TABLE clients ADD COLUMN registered_net TEXT;
CREATE INDEX clients_registered_net ON clients (registered_net, created_at);
