#!/usr/bin/env bash
# The GPU test set: the PyTorch parity suite and the device tests (training,
# resume, eval, tiled predict, fold, bench, every command's device line) on a
# GPU device, built with a GPU feature.
#
#   scripts/gpu-tests.sh [--features wgpu|vulkan|wgpu,vulkan] [--device gpu|gpu:N|vulkan|…]
#
# Defaults: --features wgpu --device gpu (Burn's WGSL kernels on whatever
# adapter wgpu finds). Without a Vulkan driver on Linux it installs Mesa's
# (lavapipe, a software Vulkan that runs on the CPU) with apt when run as
# root, so CI executes the GPU path with no GPU; on a machine with a GPU,
# its own driver is used. Extra arguments after `--` go to the test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

features=wgpu
device=gpu
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --features) features="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

# A Vulkan driver: the loader (libvulkan.so.1) and at least one ICD manifest.
has_vulkan() {
  local dir
  ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || return 1
  for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    compgen -G "$dir/*.json" >/dev/null && return 0
  done
  return 1
}

if [[ "$(uname -s)" == Linux ]] && ! has_vulkan; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== no Vulkan driver: installing Mesa's (mesa-vulkan-drivers, libvulkan1)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null; }
  else
    echo "error: no Vulkan driver found; install one (Debian/Ubuntu: sudo apt-get install mesa-vulkan-drivers libvulkan1, or the GPU vendor's driver)" >&2
    exit 1
  fi
fi

# wgpu's window-system probing wants a runtime directory; without one it
# prints a warning per instance.
if [[ -z "${XDG_RUNTIME_DIR:-}" || ! -d "${XDG_RUNTIME_DIR}" ]]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
fi

echo "== GPU test set: --features $features, WSUNET_TEST_DEVICE=$device"
WSUNET_TEST_DEVICE="$device" cargo test --release -p wsunet -p wsunet-cli --features "$features" \
  --lib --test parity --test device -- "${extra[@]}"
