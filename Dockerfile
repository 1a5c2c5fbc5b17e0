# The `eddy` binary in a small image: built in a Rust image (RocksDB and librdkafka compile from
# source, so the build needs a C++ toolchain and libclang), run on Debian slim.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p eddy-topologies --bin eddy \
 && cp target/release/eddy /usr/local/bin/eddy

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/eddy --create-home eddy
COPY --from=build /usr/local/bin/eddy /usr/local/bin/eddy
USER eddy
# State lives here; the deployment gives each worker a volume of its own.
VOLUME /var/lib/eddy
ENV EDDY_STATE_DIR=/var/lib/eddy
# 8080: SQL over HTTP, /metrics and the console; 5432: the Postgres wire protocol.
EXPOSE 8080 5432
ENTRYPOINT ["eddy"]
CMD ["--help"]
