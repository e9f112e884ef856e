#!/usr/bin/env bash
# Proves the parity tests can fail: applies one deliberate bug at a time (std
# degrees of freedom, GroupNorm group count, padding, align_corners, and one
# index or term in each CPU kernel's backward: col2im, weight gradient,
# GroupNorm), runs the parity tests and the library's unit tests (which
# compare the CPU kernels with Burn's composed ops), expects them to fail, and
# restores the sources.
# Usage: scripts/parity-mutants.sh   (from a clean work tree)
set -u
cd "$(git rev-parse --show-toplevel)"
if [ -n "$(git status --porcelain crates/wsunet/src)" ]; then
  echo "crates/wsunet/src has uncommitted changes; commit or stash them first" >&2
  exit 2
fi
status=0
mutant() {
  local name=$1 file=$2 expr=$3
  sed -i "$expr" "$file"
  if git diff --quiet "$file"; then
    echo "MUTANT NOT APPLIED: $name (pattern no longer matches $file)"
    status=1
  elif cargo test --release -q -p wsunet --lib --test parity >/dev/null 2>&1; then
    echo "SURVIVED (bad): $name"
    status=1
  else
    echo "caught: $name"
  fi
  git checkout -q -- "$file"
}
mutant "std with n instead of n-1 (CPU kernel)" crates/wsunet/src/ops/standardize.rs \
  '/^fn scale/,/^}/ s/let dof = n.saturating_sub(1).max(1) as f64;/let dof = n as f64;/'
mutant "std with n instead of n-1 (composed ops, other devices)" crates/wsunet/src/ops/standardize.rs \
  '/^fn composed/,/^}/ s/let dof = n.saturating_sub(1).max(1) as f64;/let dof = n as f64;/'
mutant "GroupNorm groups halved" crates/wsunet/src/layers/ws_gn_act.rs \
  's/fit_groups(self.out_channels, self.groups),/fit_groups(self.out_channels, self.groups \/ 2),/'
mutant "padding k/2 + 1" crates/wsunet/src/layers/ws_conv2d.rs \
  's|padding: self.padding.unwrap_or(k / 2),|padding: self.padding.unwrap_or(k / 2 + 1),|'
mutant "align_corners = true" crates/wsunet/src/geometry.rs \
  's|let src = ((o as f64 + 0.5) \* scale - 0.5).max(0.0);|let src = if out_len > 1 { o as f64 * (in_len - 1) as f64 / (out_len - 1) as f64 } else { 0.0 };|'
mutant "col2im ignores the stride" crates/wsunet/src/ops/conv.rs \
  's/dst\[ix0 + o \* g.s\] += v;/dst[ix0 + o] += v;/'
mutant "weight gradient reads the first image's dY for every image" crates/wsunet/src/ops/conv.rs \
  '/^pub fn backward_weight/,/^}/ s/let dy_band = \&dy\[n \* g.co \* g.hw_out() + r0 \* g.wo..\];/let dy_band = \&dy[r0 * g.wo..];/'
mutant "GroupNorm backward drops the mean of the gradient" crates/wsunet/src/ops/group_norm.rs \
  's/rstd \* (gm \* dz - mg - (x - mean) \* rstd \* mgx)/rstd * (gm * dz - (x - mean) * rstd * mgx)/'
exit $status
