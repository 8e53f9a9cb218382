# The weft image: one image for every role. The chart runs it as
# `weft controller`; provisioned gateways as `weft gateway`; injected pods as
# `weft sidecar run` (the sidecar: it execs `weft-sidecar`) and `weft sidecar iptables --apply` (the
# init container, the only one that runs as root, with NET_ADMIN).
#
#   docker build -t ghcr.io/weft-mesh/weft:0.1.0 .

FROM rust:1-bookworm AS build
# Pingora needs cmake; the config protocol, protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weft \
 && install -D -m 0755 target/release/weft /out/weft \
 && install -D -m 0755 target/release/weft-sidecar /out/weft-sidecar

FROM debian:bookworm-slim
# iptables for the sidecar's init container; CA roots for remote JWKS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/weft /usr/local/bin/weft
# `weft sidecar run` hands over to the sidecar alone, installed beside it.
COPY --from=build /out/weft-sidecar /usr/local/bin/weft-sidecar
# The proxy's uid: capture rules let its own traffic pass.
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/weft"]
