# syntax=docker/dockerfile:1
# portcullis container image: a Rust builder stage, then the binary alone on distroless `cc`
# (glibc and libgcc_s, nothing else: no shell, no package manager).
#
#   docker build --build-arg PORTCULLIS_REVISION="$(git rev-parse --short=12 HEAD)" -t portcullis .
#   docker run --read-only -p 8080:8080 -p 9901:9901 \
#     -v "$PWD/config.yaml:/etc/portcullis/config.yaml:ro" portcullis
#
# The config must listen on 0.0.0.0 (`listen: 0.0.0.0:8080`, the default) and, for probes and
# metrics from outside the container, `admin_listen: 0.0.0.0:9901` (the default is loopback).
# Nothing is written to the filesystem at run time, so `--read-only` (Kubernetes:
# readOnlyRootFilesystem) works as it is.

# Builder: the Rust toolchain (the crate's rust-version or newer) on Debian 12, the same
# distribution as the runtime image, so the binary's glibc matches.
FROM rust:1.95-bookworm AS build
# cmake builds the native parts of pingora's compression crates and aws-lc; the image already
# has the C toolchain and perl that aws-lc also needs. DL3008 (pin apt versions) is ignored:
# Debian 12's cmake is what the README and CI build with, and pinning its exact point release
# would break the build at Debian's next security update of it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore admits only what the release build reads: the manifest, the lock file,
# build.rs, src/ and benches/ (Cargo.toml declares the benches, so their files must exist).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# .git is not in the build context: the revision `portcullis --version` prints comes from here.
ARG PORTCULLIS_REVISION=unknown
ENV PORTCULLIS_REVISION=${PORTCULLIS_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && cp target/release/portcullis /usr/local/bin/portcullis

# Runtime: distroless cc on Debian 12, tag `nonroot` (uid/gid 65532 exists in its passwd).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Reverse-proxy JWT auth gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY config.example.yaml /usr/share/portcullis/config.example.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# Proxy listener (`listen`) and admin listener (`admin_listen`: /healthz, /readyz, /metrics).
EXPOSE 8080 9901
# Kubernetes ignores HEALTHCHECK and uses the chart's probes on /healthz and /readyz; the image
# has no shell or HTTP client to run one, and the admin listener is off or on loopback unless
# the config opens it.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "-c", "/etc/portcullis/config.yaml"]
