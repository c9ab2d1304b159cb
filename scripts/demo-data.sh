#!/usr/bin/env bash
# Makes sure the Fashion-MNIST IDX files that `make run` trains on are installed: the Debian/Ubuntu
# package dataset-fashion-mnist (files under /usr/share/datasets/fashion-mnist/). When they are
# missing it installs the package if it can without asking (root, or passwordless sudo);
# otherwise it stops with the one command that installs it. apt's output is shown only when the
# install fails. FASHION_MNIST_DIR points at another folder with the same files.
set -euo pipefail

DIR="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
PACKAGE="dataset-fashion-mnist"

present() {
  [ -f "$DIR/train-images-idx3-ubyte.gz" ] || [ -f "$DIR/train-images-idx3-ubyte" ]
}

cannot() {
  echo "demo data not found in $DIR ($1); install it with: sudo apt-get install $PACKAGE" >&2
  exit 1
}

present && exit 0

command -v apt-get >/dev/null || cannot "no apt-get on this machine"
if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  cannot "installing it needs root"
fi

echo "installing $PACKAGE (Fashion-MNIST, about 30 MB) with apt-get"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$PACKAGE"; } >"$log" 2>&1; then
  cat "$log" >&2
  cannot "apt-get failed, output above"
fi
present || cannot "$PACKAGE is installed but its files are elsewhere"
