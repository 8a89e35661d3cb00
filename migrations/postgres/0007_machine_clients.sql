-- Machine clients (the client_credentials grant): the MCP servers each may get tokens for, and the
-- scopes it may get at each (space-separated). Removing the client or the MCP server removes the
-- permission; `created_at` stays when the operator re-applies it, so tokens issued before a
-- re-application stay live and tokens older than a removal and re-addition do not.
CREATE TABLE client_resources (
    client_id   TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    resource_id UUID NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, resource_id)
);
CREATE INDEX client_resources_resource ON client_resources (resource_id);
