-- When a refresh token's family began (its code's redemption), copied to every successor, so that
-- rotation cannot extend a family past `refresh_token_max_lifetime`. NULL for tokens issued before
-- this column existed: their family's limit counts from its next rotation.
ALTER TABLE refresh_tokens ADD COLUMN family_started_at BIGINT;
