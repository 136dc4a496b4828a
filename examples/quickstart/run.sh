#!/usr/bin/env bash
# The README's newcomer path, end to end, against a real registry: init on a folder of your
# own files, keygen, bundle (signed), push, pull, verify, gate. scripts/test runs it in CI.
#
#   examples/quickstart/run.sh                       # mlart from PATH, a registry it starts
#   MLART=target/debug/mlart REGISTRY=localhost:5000 examples/quickstart/run.sh
#
# Without REGISTRY it starts Debian's `docker-registry` on a free loopback port and stops it
# at the end. Every command below is the one the README shows.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
MLART="${MLART:-mlart}"
case "$MLART" in /*) ;; */*) MLART="$PWD/$MLART" ;; esac
mlart() { "$MLART" "$@"; }

work="$(mktemp -d)"
reg_pid=""
cleanup() {
  if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${REGISTRY:-}" ]; then
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:0\n' \
    "$work/registry" >"$work/registry.yml"
  docker-registry serve "$work/registry.yml" >"$work/registry.access.log" 2>"$work/registry.log" &
  reg_pid=$!
  for _ in $(seq 100); do
    REGISTRY="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/registry.log" | head -1)"
    [ -n "$REGISTRY" ] && break
    sleep 0.1
  done
  [ -n "$REGISTRY" ] || { echo "quickstart: docker-registry did not start" >&2; cat "$work/registry.log" >&2; exit 1; }
fi
step() { printf '\n== %s\n' "$*"; }

# "Your own folder": the example's files, without its mlart.yaml.
mkdir -p "$work/my-model"
cp -r "$repo/examples/iris/." "$work/my-model/"
rm -f "$work/my-model/mlart.yaml"
cd "$work/my-model"

step "mlart init"
mlart init --name iris
step "mlart keygen"
mlart keygen -o release
step "mlart bundle"
mlart bundle --sign release.key                 # -> build/iris.oci, tagged with the spec's version
step "mlart push"
mlart push build/iris.oci "$REGISTRY/ml/iris:1.0.0"
step "mlart pull"
mlart pull "$REGISTRY/ml/iris:1.0.0"            # -> ./iris
test -f iris/model/iris.onnx
step "mlart verify"
mlart verify "$REGISTRY/ml/iris:1.0.0" --key release.pub
mlart verify iris --key release.pub             # the pulled files against their model.sig
step "mlart gate"
printf 'gates:\n  metrics: [{metric: accuracy, min: 0.9}]\n  signature: required\n' >gates.yaml
mlart gate "$REGISTRY/ml/iris:1.0.0" --policy gates.yaml --key release.pub \
  --baseline "$REGISTRY/ml/iris:prod" --baseline-optional
echo
echo "quickstart: every step passed"
