#!/usr/bin/env bash
# Builds Flux's helm-controller and source-controller (the vs-flux benchmark peer) from the Go module proxy.
# Usage: hack/bench/flux-build.sh [OUTDIR]   (default: $HELMOPS_CACHE_DIR/bin/flux-<hc>-<sc>)
# Idempotent: a binary that exists and carries its version marker is not rebuilt. Never writes into the repo.
# Neither controller installs with `go install mod@v` (their go.mod files have replace directives), so each is
# built from a tiny wrapper module whose go.mod is the controller's own with the module line renamed, the
# local `=> ./api` replace dropped (the api module of the same version then comes from the proxy) and a require
# on the controller added; MVS then selects exactly the controller's pinned dependency versions.
set -euo pipefail
HC=${FLUX_HELM_CONTROLLER_VERSION:-v1.4.3}
SC=${FLUX_SOURCE_CONTROLLER_VERSION:-v1.7.3}
CACHE=${HELMOPS_CACHE_DIR:-$HOME/.cache/helmops}
OUT=${1:-$CACHE/bin/flux-hc-$HC-sc-$SC}
export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE_OVERRIDE:-$CACHE/go/build}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
command -v go >/dev/null || { echo "flux-build: no 'go' on PATH; install Go 1.25+ to build the Flux peer" >&2; exit 3; }
mkdir -p "$OUT" "$GOMODCACHE" "$GOCACHE"

build() {  # build NAME VERSION
  local name=$1 ver=$2 mod="github.com/fluxcd/$1" bin="$OUT/$1"
  cd "$CACHE"  # outside any module: a previous call left us in its wrapper module
  # The CRDs ship in the module (a cached download: instant after the first run); the benchmark installs them.
  local info; info=$(go mod download -json "$mod@$ver")
  local gomod; gomod=$(printf '%s' "$info" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  local dir; dir=$(printf '%s' "$info" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -f "$gomod" ] && [ -d "$dir" ] || { echo "flux-build: could not download $mod@$ver" >&2; return 1; }
  mkdir -p "$OUT/crds"; cp -f "$dir"/config/crd/bases/*.yaml "$OUT/crds/"; chmod u+w "$OUT/crds/"*.yaml
  if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$ver" ]; then
    echo "flux-build: $name $ver cached at $bin (no rebuild)"; return 0
  fi
  local work="$CACHE/build/flux-$name-$ver"
  rm -rf "$work"; mkdir -p "$work"; cd "$work"
  echo "flux-build: building $name $ver (cold: 8-12 min on 2 idle cores, 30+ under load at nice 10) in $work"
  # Module line renamed; every local (=> ./...) replace dropped, single-line or inside a replace block.
  sed -e "s#^module .*#module helmops.local/flux-$name-build#" \
      -e '/=> \.\.\{0,1\}\//d' "$gomod" > go.mod
  go mod edit -require "$mod@$ver"
  go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$mod"
  mv "$bin.tmp" "$bin"
  echo "$ver" > "$bin.version"
  echo "flux-build: $name $ver -> $bin"
}

build helm-controller "$HC"
build source-controller "$SC"
ls -la "$OUT"
