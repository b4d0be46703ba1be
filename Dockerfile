# syntax=docker/dockerfile:1
#
# rangecopy's container image: the release binary on a slim Debian, run as a non-root user.
#
#   docker build -t rangecopy .
#   docker run --rm -e RANGECOPY_SOURCE -e RANGECOPY_TARGET rangecopy copy --job shop
#
# The final image holds the binary, CA certificates (for sslmode=verify-full / ssl-mode=VERIFY_IDENTITY)
# and the PostgreSQL client programs pg_dump and pg_restore, which whole-database copies from a
# PostgreSQL source call (found under /usr/lib/postgresql/*/bin; they must be at least the source
# server's major version). PG_MAJOR picks them: 17 comes from Debian itself; any other major
# (18 for a PostgreSQL 18 source) from the PostgreSQL project's apt repository:
#
#   docker build --build-arg PG_MAJOR=18 -t rangecopy .

ARG DEBIAN=trixie

# ---------------------------------------------------------------- build
FROM rust:1.95-slim-${DEBIAN} AS build
WORKDIR /src
# Only what `cargo build` reads (see .dockerignore); the caches keep the registry and the
# compiled dependencies between builds.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/rangecopy /usr/local/bin/rangecopy

# ---------------------------------------------------------------- run
FROM debian:${DEBIAN}-slim
ARG PG_MAJOR=17
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates postgresql-common; \
    if ! apt-cache show "postgresql-client-${PG_MAJOR}" >/dev/null 2>&1; then \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 rangecopy; \
    useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/rangecopy \
        --shell /usr/sbin/nologin rangecopy
COPY --from=build /usr/local/bin/rangecopy /usr/local/bin/rangecopy
# A numeric user, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/rangecopy
ENTRYPOINT ["rangecopy"]
CMD ["--help"]
