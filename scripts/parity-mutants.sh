#!/usr/bin/env bash
# Proves the parity and kernel tests can fail: applies one deliberate bug at a
# time, runs the library's unit tests (every CPU kernel against its
# definition or Burn's composed ops) and the PyTorch parity tests, and counts
# the mutant as caught only when named tests fail, not when the build breaks
# or nothing runs. The sources are restored after each mutant and on any
# exit (Ctrl-C, a kill, an error).
#
#   scripts/parity-mutants.sh            # every mutant
#   scripts/parity-mutants.sh --quick    # a few, one per kind of kernel (CI)
#
# Needs a clean crates/wsunet/src. Prints one line per mutant with the tests
# that caught it; exits 1 if any mutant survived or did not apply.
set -u
cd "$(git rev-parse --show-toplevel)"
if [ -n "$(git status --porcelain crates/wsunet/src)" ]; then
  echo "crates/wsunet/src has uncommitted changes; commit or stash them first" >&2
  exit 2
fi
quick=false
[ "${1:-}" = "--quick" ] && quick=true
restore() { git checkout -q -- crates/wsunet/src; }
trap restore EXIT
trap 'restore; exit 130' INT TERM

status=0
log=$(mktemp)
mutant() {
  local kind=$1 name=$2 file=$3 expr=$4
  if $quick && [ "$kind" != quick ]; then return; fi
  sed -i "$expr" "$file"
  if git diff --quiet "$file"; then
    echo "MUTANT NOT APPLIED: $name (pattern no longer matches $file)"
    status=1
    return
  fi
  cargo test --release -p wsunet --lib --test parity --no-fail-fast >"$log" 2>&1
  local failed
  failed=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | sort -u)
  if grep -qE '^error(\[E[0-9]+\])?: ' "$log" && [ -z "$failed" ]; then
    echo "MUTANT DOES NOT BUILD (fix the mutant): $name"
    grep -E '^error' "$log" | head -3
    status=1
  elif [ -z "$failed" ]; then
    echo "SURVIVED (bad): $name"
    status=1
  else
    echo "caught: $name — by $(echo "$failed" | wc -l) test(s): $(echo "$failed" | head -4 | tr '\n' ' ')"
  fi
  git checkout -q -- "$file"
}

mutant quick "std with n instead of n-1 (CPU kernel)" crates/wsunet/src/ops/standardize.rs \
  '/^fn scale/,/^}/ s/let dof = n.saturating_sub(1).max(1) as f64;/let dof = n as f64;/'
mutant all "std with n instead of n-1 (composed ops, other devices)" crates/wsunet/src/ops/standardize.rs \
  '/^fn composed/,/^}/ s/let dof = n.saturating_sub(1).max(1) as f64;/let dof = n as f64;/'
mutant all "GroupNorm groups halved" crates/wsunet/src/layers/ws_gn_act.rs \
  's/fit_groups(self.out_channels, self.groups),/fit_groups(self.out_channels, self.groups \/ 2),/'
mutant all "padding k/2 + 1" crates/wsunet/src/layers/ws_conv2d.rs \
  's|padding: self.padding.unwrap_or(k / 2),|padding: self.padding.unwrap_or(k / 2 + 1),|'
mutant all "align_corners = true" crates/wsunet/src/geometry.rs \
  's|let src = ((o as f64 + 0.5) \* scale - 0.5).max(0.0);|let src = if out_len > 1 { o as f64 * (in_len - 1) as f64 / (out_len - 1) as f64 } else { 0.0 };|'
mutant all "col2im ignores the stride" crates/wsunet/src/ops/conv/mod.rs \
  's/dst\[ix0 + o \* g.s\] += v;/dst[ix0 + o] += v;/'
mutant all "weight gradient reads the first image's dY for every image" crates/wsunet/src/ops/conv/mod.rs \
  '/^pub fn backward_weight/,/^}/ s/let dy_band = \&dy\[n \* g.co \* g.hw_out() + r0 \* g.wo..\];/let dy_band = \&dy[r0 * g.wo..];/'
mutant all "strided input gradient, images in parallel: every image reads the first image's dY" crates/wsunet/src/ops/conv/mod.rs \
  '/^pub fn backward_input/,/^}/ s/let dy_band = \&dy\[n \* g.co \* g.hw_out() + r0 \* g.wo..\];/let dy_band = \&dy[r0 * g.wo..];/'
mutant all "strided im2col reads every tap from the first column phase" crates/wsunet/src/ops/conv/mod.rs \
  '/^fn im2col/,/^}/ s/start\[ix0 % g.s\]/start[0]/'
mutant all "strided col2im adds every tap into the first column phase" crates/wsunet/src/ops/conv/mod.rs \
  '/^fn col2im/,/^}/ s/start\[ix0 % g.s\]/start[0]/'
mutant all "Winograd output transform adds the last column point instead of subtracting it" crates/wsunet/src/ops/conv/winograd.rs \
  's/\*od = b - c - d;/*od = b - c + d;/'
mutant all "the whole batch as one band: every image unfolded from the first image's planes" crates/wsunet/src/ops/conv/batch.rs \
  's/let plane = \&x\[(i \* g.ci + c) \* g.hw_in()..\]\[..g.hw_in()\];/let plane = \&x[c * g.hw_in()..][..g.hw_in()];/'
mutant quick "GroupNorm backward drops the mean of the gradient" crates/wsunet/src/ops/group_norm.rs \
  's/rstd \* (gm \* dz - mg - (x - mean) \* rstd \* mgx)/rstd * (gm * dz - (x - mean) * rstd * mgx)/'
mutant all "BatchNorm training kernel's backward drops the mean of the gradient" crates/wsunet/src/ops/batch_norm.rs \
  's/rstd \* (gm \* dz - mg - (x - mean) \* rstd \* mgx)/rstd * (gm * dz - (x - mean) * rstd * mgx)/'
mutant all "bias + SiLU backward without SiLU's second term" crates/wsunet/src/ops/bias_act.rs \
  's/d \* s \* (1.0 + z \* (1.0 - s))/d * s/'
mutant quick "direct convolution reads the kernel transposed (ky and kx swapped)" crates/wsunet/src/ops/conv/direct.rs \
  's|((ky % s) \* self.ps + kx % s) \* self.phase() + (ky / s) \* self.wq + kx / s|((kx % s) * self.ps + ky % s) * self.phase() + (kx / s) * self.wq + ky / s|'
mutant all "conv2d_cat reads the second input's channels rotated by one" crates/wsunet/src/ops/conv/direct.rs \
  's|Some(ca) => \&self.b\[(n \* (g.ci - ca) + c - ca) \* hw..\]\[..hw\],|Some(ca) => \&self.b[(n * (g.ci - ca) + (c - ca + 1) % (g.ci - ca)) * hw..][..hw],|'
mutant all "weight gradient from padded planes reads the kernel's taps transposed" crates/wsunet/src/ops/conv/direct_wgrad.rs \
  's|l.tap(1, tap / g.k, tap % g.k)|l.tap(1, tap % g.k, tap / g.k)|'
mutant quick "resize backward sends the right neighbour's share to the left one" crates/wsunet/src/ops/resize.rs \
  's|readers\[i1\].push((o, l1));|readers[i0].push((o, l1));|'
mutant all "loss kernel: Dice's intersection counted once, not twice" crates/wsunet/src/ops/seg_loss.rs \
  's|(-2.0 \* scale \* inv_k) as f32|(-1.0 * scale * inv_k) as f32|'
mutant quick "BatchNorm's running variance biased (no n/(n-1))" crates/wsunet/src/layers/batch_norm.rs \
  's|.mul_scalar(count as f64 / (count - 1) as f64);|.mul_scalar(1.0);|'
rm -f "$log"
exit $status
