// Package e2e holds the end-to-end test of the docker compose cluster (docker-compose.yml) on
// the local Docker engine: a user's first run, from `make up` to `make down`, checked step by
// step. It has no code outside its test, which is built with the e2e tag and run by `make e2e`
// (part of `make test` whenever a Docker engine answers):
//
//	go test -tags e2e -v ./internal/e2e
//
// The cluster runs under its own compose project name and on ports of its own, so a cluster
// started with `make up` is left alone. TERN_E2E_KEEP=1 leaves the cluster running after the
// test, to look at.
package e2e
