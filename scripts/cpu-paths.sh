#!/usr/bin/env bash
# The CPU engine on CPUs other than this one: runs the library's unit tests
# (every kernel against its reference, forward and backward) and the PyTorch
# parity tests (every layer and model variant against the golden fixtures)
# under QEMU's user-mode emulator with two CPU models:
#   - Haswell: AVX2 and FMA, no AVX-512 (gemm's FMA kernels, the element-wise
#     kernels' AVX2 build), the machine most users without AVX-512 have;
#   - qemu64: baseline x86-64, SSE2 only (gemm's scalar kernels and the
#     element-wise kernels' baseline build).
# Both dispatches are chosen at run time from CPUID, which the emulator
# reports for the model, so the release test binaries run unchanged.
#
#   scripts/cpu-paths.sh        # builds the test binaries (cargo test --release --no-run) if needed
#
# x86-64 Linux only. Installs qemu-user with apt when it is missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(uname -m) != x86_64 ]]; then
  echo "cpu-paths: not an x86-64 machine; nothing to emulate"
  exit 0
fi
if ! command -v qemu-x86_64 >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing QEMU's user-mode emulator (qemu-user)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends qemu-user >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends qemu-user >/dev/null; }
  else
    echo "error: qemu-x86_64 is not installed; install it (as root: apt-get install qemu-user)" >&2
    exit 1
  fi
fi

# The test executables cargo built (or builds now), from its JSON messages.
mapfile -t bins < <(cargo test --release -p wsunet --lib --test parity --no-run --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
if [[ ${#bins[@]} -ne 2 ]]; then
  echo "error: expected the unit-test and parity executables, got: ${bins[*]:-none}; run cargo test --release -p wsunet --no-run to see why" >&2
  exit 1
fi

# Tests read their fixtures relative to the crate, as cargo runs them.
cd crates/wsunet
status=0
# WSUNET_EXPECT_CPU tells the tests what the emulated CPU must report: a
# unit test asserts it, and a SIMD kernel test that would skip on a CPU said
# to have AVX2 + FMA fails instead.
for cpu in Haswell-v4:avx2 qemu64:baseline; do
  expect=${cpu#*:} cpu=${cpu%%:*}
  for bin in "${bins[@]}"; do
    name=$(basename "$bin")
    # QEMU warns about CPUID bits it does not emulate (not used here).
    if out=$(WSUNET_EXPECT_CPU=$expect qemu-x86_64 -cpu "$cpu" "$bin" --test-threads 2 2>&1); then
      echo "$cpu ${name%-*}: $(grep '^test result' <<<"$out")"
    else
      echo "$cpu ${name%-*}: FAILED" >&2
      grep -v '^qemu-x86_64: warning' <<<"$out" | tail -40 >&2
      status=1
    fi
  done
done
exit $status
