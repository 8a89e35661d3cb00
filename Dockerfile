# Portcullis: build once, run anywhere with SQLite or Postgres.
FROM rust:1-bookworm AS build
# OpenSSL: josekit (JWS/JWK) links it; HTTP and TLS themselves use rustls.
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# A workspace member, and the manifest's test target: cargo needs both present even to build the
# server alone (.dockerignore keeps the interop rig, databases and target/ out of the context).
COPY bench bench
COPY tests/it tests/it
COPY src src
COPY migrations migrations
COPY templates templates
COPY static static
RUN cargo build --release --bin portcullis

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/portcullis --create-home portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER portcullis
WORKDIR /var/lib/portcullis
ENV PORTCULLIS_BIND=0.0.0.0:8080 \
    PORTCULLIS_DATA_DIR=/var/lib/portcullis/data \
    PORTCULLIS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["portcullis"]
CMD ["serve"]
# The CLI runs in the same container, against the same database:
#   docker compose exec portcullis portcullis user add alice
#   docker compose exec portcullis portcullis resource add https://mcp.example.com/mcp --name "Example MCP" --scope "mcp:tools=Use the tools"
