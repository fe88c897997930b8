# gatehouse: a static binary on a distroless base, running as non-root.
#   docker build -t gatehouse .
#   docker run -p 4180:4180 -v $PWD/gatehouse.yaml:/etc/gatehouse/gatehouse.yaml:ro gatehouse
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gatehouse .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /gatehouse
USER nonroot:nonroot
EXPOSE 4180
ENTRYPOINT ["/gatehouse"]
CMD ["serve", "-config", "/etc/gatehouse/gatehouse.yaml"]
