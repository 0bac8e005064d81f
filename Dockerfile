# Switchboard in a container: built with the locked dependencies, run as a non-root user from a
# small Debian image. The data folder and the configuration folders are volumes.
#
#   docker build -t switchboard .
#   docker run -p 8080:8080 -e SWITCHBOARD_ADMIN_KEY=sk-... -v sb-data:/var/lib/switchboard switchboard
#
# There is no container engine on the machine this project is built on: tests/api/container.rs
# checks the commands below outside a container (see README, "Containers").

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
# CA certificates: Redis over TLS (`rediss://`) verifies against the system's roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/switchboard switchboard \
    && mkdir -p /var/lib/switchboard /etc/switchboard \
    && chown switchboard /var/lib/switchboard
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY providers.d /etc/switchboard/providers.d
COPY policies /etc/switchboard/policies
USER switchboard
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["switchboard", "healthcheck", "--url", "127.0.0.1:8080"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data", "/var/lib/switchboard/data", "--providers", "/etc/switchboard/providers.d", "--policies", "/etc/switchboard/policies"]
