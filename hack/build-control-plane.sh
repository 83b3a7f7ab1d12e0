#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules (envtest style: no kubelet, no scheduler).
# Called by hack/tools; usable alone:  hack/build-control-plane.sh OUTDIR [K8S_VERSION] [ETCD_VERSION]
# Go's module and build caches live under the helmops cache dir so a second run is a no-op.
set -euo pipefail
OUT=${1:?usage: build-control-plane.sh OUTDIR [K8S_VERSION] [ETCD_VERSION]}
K8S=${2:-v1.32.13}
ETCD=${3:-v3.5.21}
CACHE=${HELMOPS_CACHE_DIR:-$HOME/.cache/helmops}
export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE_OVERRIDE:-$CACHE/go/build}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
mkdir -p "$OUT" "$GOMODCACHE" "$GOCACHE"
command -v go >/dev/null || { echo "hack: cannot build kube-apiserver/etcd: no 'go' on PATH. Install Go, or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd." >&2; exit 3; }

staging="${K8S/v1./v0.}"
if [ ! -x "$OUT/kube-apiserver" ]; then
  work="$CACHE/build/kube-apiserver-$K8S"; mkdir -p "$work"; cd "$work"
  echo "hack: building kube-apiserver $K8S from the k8s.io/kubernetes module (first time only; ~10 min on 2 cores)"
  printf 'module helmops.local/kubeapiserverbuild\n\ngo 1.23\n' > go.mod
  printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\nfunc main() {}\n' > tools.go
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  # Every staging module the kubernetes go.mod replaces with ./staging/... is pinned to its published tag.
  for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace "$m=$m@$staging"
  done
  go mod edit -require "k8s.io/kubernetes@$K8S"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=32" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
fi

if [ ! -x "$OUT/etcd" ]; then
  work="$CACHE/build/etcd-$ETCD"; mkdir -p "$work"; cd "$work"
  echo "hack: building etcd $ETCD from the go.etcd.io/etcd/server/v3 module (first time only)"
  printf 'module helmops.local/etcdbuild\n\ngo 1.23\n' > go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go mod edit -require "go.etcd.io/etcd/server/v3@$ETCD"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
"$OUT/kube-apiserver" --version
"$OUT/etcd" --version | head -1
