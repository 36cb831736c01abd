# Myelin container image: a static binary (no cgo; SQLite is pure Go) on
# distroless/static, which holds CA certificates, time zones and a non-root
# user, and nothing else: no shell, no curl. The HEALTHCHECK uses the binary.
#
#   docker build -t myelin .
#   docker run -e MYELIN_SERVER_NAME=example.org -v myelin-data:/data -p 8008:8008 myelin
#
# deploy/README.md walks through a full deployment.

FROM golang:1.24-bookworm AS build
# go.mod asks for Go 1.27; the go command fetches that toolchain.
ENV GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
RUN go build -trimpath -ldflags="-s -w" -o /out/myelin ./cmd/myelin \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/myelin /usr/local/bin/myelin
# The volume's mount point must belong to the non-root user (65532), so a
# fresh named volume is writable.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV MYELIN_DATA_DIR=/data \
    MYELIN_LISTEN=0.0.0.0:8008
VOLUME ["/data"]
# 8008: client API, and federation behind a TLS proxy.
# 8448: federation over TLS, when MYELIN_FEDERATION_LISTEN and a
# certificate (MYELIN_TLS_CERT, MYELIN_TLS_KEY) are set.
EXPOSE 8008 8448
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/myelin", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/myelin"]
CMD ["serve"]
