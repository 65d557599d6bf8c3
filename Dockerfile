# syntax=docker/dockerfile:1
# The iteris image: the static binary on Debian slim with OpenBLAS (loaded at run time, no cgo),
# running as an unprivileged user; the binary is the entrypoint, so a pod's args start with the
# command (coordinator, worker, submit, status, merge, plan, eval).
#
#   docker build -t iteris:dev --build-arg VERSION=$(git describe --tags --always) .
#
# The manifests in deploy/k8s run it as uid 10001 (the validation test there checks that they
# agree with this file).

FROM golang:1.26.8-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/iteris ./cmd/iteris

FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 iteris \
 && useradd --system --uid 10001 --gid iteris --home-dir /home/iteris --create-home --shell /usr/sbin/nologin iteris
COPY --from=build /out/iteris /usr/local/bin/iteris
USER 10001:10001
WORKDIR /home/iteris
ENTRYPOINT ["/usr/local/bin/iteris"]
CMD ["help"]
