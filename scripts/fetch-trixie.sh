#!/usr/bin/env bash
# fetch-trixie.sh PACKAGE PATH: puts Debian trixie's PACKAGE under .cache/trixie/root/ in
# the repository (once) and prints the path of PATH inside it (e.g. usr/bin/...). The
# system's apt state is not touched: a private sources list and lists directory are
# used, and the package is unpacked with `dpkg -x`, not installed. The archive's address
# is read from the system's own apt sources, so this works behind whatever mirror the
# machine uses. Used for the benchmarks' peers (smokeping_prober, blackbox_exporter).
set -euo pipefail
cd "$(dirname "$0")/.."
package=${1:?usage: fetch-trixie.sh PACKAGE PATH}
inside=${2:?usage: fetch-trixie.sh PACKAGE PATH}

cache=.cache/trixie
root=$cache/root
bin=$root/$inside
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

sources=/etc/apt/sources.list.d/debian.sources
uri=$(awk '$1 == "URIs:" { print $2; exit }' "$sources" 2>/dev/null || true)
if [ -z "$uri" ]; then
  echo "fetch-trixie: no URIs line in $sources" >&2
  exit 1
fi

mkdir -p "$cache/lists/partial" "$cache/archives/partial" "$cache/debs"
cat >"$cache/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main
LIST
apt_opts=(
  -o "Dir::Etc::SourceList=$PWD/$cache/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$PWD/$cache/lists"
  -o "Dir::Cache=$PWD/$cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "Debug::NoLocking=1"
)
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$cache/debs" && apt-get -o APT::Sandbox::User=root "${apt_opts[@]}" -qq download "$package" >&2)
deb=$(ls "$cache"/debs/"${package}"_*.deb | tail -n 1)
mkdir -p "$root"
dpkg -x "$deb" "$root"
if [ ! -x "$bin" ]; then
  echo "fetch-trixie: $deb has no $inside" >&2
  exit 1
fi
echo "$bin"
