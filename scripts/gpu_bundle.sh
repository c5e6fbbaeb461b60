#!/usr/bin/env bash
# Downloads (here, on a Debian 12 machine with a package registry) the .deb files a GPU machine
# without Debian's -dev packages needs to build seqvit: the build dependencies that
# scripts/setup installs and their shared libraries (one level of Depends, lib* only), into
# .gpu-debs/ (git-ignored). scripts/gpu_check.sh unpacks them there (docs/cuda.md).
#   scripts/gpu_bundle.sh            -> .gpu-debs/*.deb, and the total size
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=(libdnnl-dev libnetcdf-dev libeccodes-dev libblosc-dev libzstd-dev zlib1g-dev libpng-dev
     libopenmpi-dev openmpi-bin nlohmann-json3-dev libcli11-dev libfmt-dev libgtest-dev
     libgmock-dev libbenchmark-dev libhdf5-dev)
# what every Linux with a C++ compiler has already
SKIP='^(libc6|libc6-dev|libstdc\+\+6|libgcc-s1|libgcc-12-dev|libstdc\+\+-12-dev|gcc-12-base|debconf|perl|perl-base|dpkg|libcrypt1|libcrypt-dev)$'
want=("${DEV[@]}")
for p in "${DEV[@]}"; do
  while read -r dep; do
    [[ $dep =~ ^lib ]] && ! [[ $dep =~ $SKIP ]] && want+=("$dep")
  done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
             --no-replaces --no-enhances "$p" | awk '/Depends:/ {print $2}' | tr -d '<>')
done
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
real=()  # virtual packages (libc-dev, libcurl-dev) have no .deb of their own
for p in "${want[@]}"; do
  c=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $c && $c != "(none)" ]] && real+=("$p")
done
want=("${real[@]}")
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download "${want[@]}" >/dev/null
echo "gpu_bundle: ${#want[@]} packages, $(du -sh . | cut -f1) in .gpu-debs/"
