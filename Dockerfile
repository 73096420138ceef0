# herald's container image: built with the Rust toolchain image, run from a
# small Debian image as an unprivileged user.
#
#   docker build -t herald .
#   docker run -p 8080:8080 -e HERALD_PUBLISH_TOKEN=change-me herald
#
# Both listeners bind every interface of the container: the public one
# (8080) for the proxy in front, the internal one (8081) for the backends
# that publish. Publish 8081 to nothing public, and set HERALD_PUBLISH_TOKEN.
# Any option is a HERALD_* variable or a flag after the image name (see
# `docker run herald --help`).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin herald \
    && cp target/release/herald /usr/local/bin/herald

FROM debian:bookworm-slim
# curl for the HEALTHCHECK below; nothing else is added.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin herald
COPY --from=build /usr/local/bin/herald /usr/local/bin/herald
USER 10001
ENV HERALD_PUBLIC_ADDR=0.0.0.0:8080 \
    HERALD_INTERNAL_ADDR=0.0.0.0:8081
EXPOSE 8080 8081
# The public listener's /healthz (503 while the store is unreachable); a
# HERALD_PUBLIC_ADDR with another port needs this line changed too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
# herald drains on SIGTERM (docker stop): streams end, WebSockets close with
# 1001, within --drain-timeout (10 s by default; docker stop waits 10 s
# before SIGKILL, so give it -t 15 or more).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/herald"]
