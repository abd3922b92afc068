#!/usr/bin/env bash
# build-deb.sh builds the Debian package of ckd and ckctl from the
# repository holding this script, into dist/ under the current directory
# (README.md, "Install as a service"). It needs Go and the Go module proxy
# (or a module cache holding nFPM); nothing else.
#
#   packaging/build-deb.sh     # dist/ckd_<version>_<arch>.deb
#
# CKD_VERSION sets the package's version (default: rpc.Version), GOARCH
# its architecture. Exit status 69 (EX_UNAVAILABLE): nFPM could not be
# fetched; nothing was built.
set -euo pipefail

# nFPM, the packager (github.com/goreleaser/nfpm), run with go run at a
# fixed version: no binary to install, the same package on every machine.
NFPM_VERSION=v2.48.0
nfpm=(go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}")

out="${PWD}/dist"
repo="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"

if ! "${nfpm[@]}" --version >/dev/null 2>"${TMPDIR:-/tmp}/build-deb-nfpm.$$"; then
	echo "build-deb.sh: cannot fetch nFPM ${NFPM_VERSION} with go run:" >&2
	cat "${TMPDIR:-/tmp}/build-deb-nfpm.$$" >&2
	rm -f "${TMPDIR:-/tmp}/build-deb-nfpm.$$"
	exit 69
fi
rm -f "${TMPDIR:-/tmp}/build-deb-nfpm.$$"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
export CKD_STAGE="$stage"
export CKD_ARCH="${GOARCH:-$(go env GOARCH)}"
export CKD_VERSION="${CKD_VERSION:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' rpc/version.go)}"
if [ -z "$CKD_VERSION" ]; then
	echo "build-deb.sh: no version: set CKD_VERSION" >&2
	exit 1
fi

# Static binaries (no libc to depend on), without the build's paths or
# DWARF (a panic's stack trace needs neither).
CGO_ENABLED=0 GOOS=linux GOARCH="$CKD_ARCH" go build -trimpath -ldflags="-s -w" -o "$stage/" ./cmd/ckd ./cmd/ckctl

cp packaging/nfpm.yaml "$stage/nfpm.yaml"
# Bash completion, when this ckctl has the command (an older one has not:
# the package is built without it, and says so).
if [ "$CKD_ARCH" = "$(go env GOHOSTARCH)" ] && "$stage/ckctl" completion bash >"$stage/ckctl.bash" 2>/dev/null && [ -s "$stage/ckctl.bash" ]; then
	cat >>"$stage/nfpm.yaml" <<'YAML'
  - src: ${CKD_STAGE}/ckctl.bash
    dst: /usr/share/bash-completion/completions/ckctl
    expand: true
    file_info:
      mode: 0644
YAML
else
	echo "build-deb.sh: note: no bash completion in the package ('ckctl completion bash' is not available)" >&2
fi

mkdir -p "$out"
"${nfpm[@]}" package --config "$stage/nfpm.yaml" --packager deb --target "$out/"
