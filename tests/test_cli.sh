#!/bin/sh
# The mtl program end to end: train -> predict -> eval on a small generated problem, info,
# config, exit statuses and messages, and resuming an interrupted run from its checkpoint.
# Usage: test_cli.sh path/to/mtl
set -u
mtl=$1
case $mtl in /*) ;; *) mtl=$(pwd)/$mtl ;; esac
[ -x "$mtl" ] || { echo "not an executable: $mtl"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mtl_cli_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run EXPECTED_STATUS NAME COMMAND...: stdout to NAME.out, stderr to NAME.err
run() {
  want=$1; name=$2; shift 2
  "$@" >"$name.out" 2>"$name.err"
  got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$name: exit status $got, expected $want"
    sed 's/^/  | /' "$name.out" "$name.err"
  fi
}

has() { grep -q -- "$2" "$1" || fail "$1 does not contain '$2'"; }
lacks() { if grep -q -- "$2" "$1"; then fail "$1 contains '$2'"; fi; }

# --- help, version, usage ----------------------------------------------------------------
run 0 help "$mtl" --help
has help.out "usage: mtl COMMAND"
has help.out "make-example-data"
run 0 version "$mtl" --version
has version.out "libmtl 1\."
has version.out "BLIS"
run 2 nocmd "$mtl"
has nocmd.err "^mtl: missing command"
run 2 badcmd "$mtl" fly
has badcmd.err "^mtl: unknown command 'fly'"
run 2 badopt "$mtl" train --fast x.yaml
has badopt.err "^mtl: train: unknown option '--fast'"

# --- data and configuration --------------------------------------------------------------
run 0 data "$mtl" make-example-data data --samples 400 --seed 3
for f in train_x train_class train_value test_x test_class test_value; do
  [ -f "data/$f.npy" ] || fail "make-example-data did not write data/$f.npy"
done
cat >run.yaml <<'EOF'
data:
  dir: data
  train:
    input: train_x.npy
    labels: {class: train_class.npy, value: train_value.npy}
  validation: 0.1
  test: {input: test_x.npy, labels: {class: test_class.npy, value: test_value.npy}}
model:
  trunk: [{kind: linear, out: 32}, relu]
tasks:
  class: {kind: classification}
  value: {kind: regression}
optimizer: {kind: adam, lr: 0.01}
training:
  epochs: 3
  batch_size: 30
  seed: 1
  checkpoint_path: best.ckpt
  checkpoint_every: 1
  checkpoint_pattern: last.ckpt
  log_path: run.jsonl
  progress: lines
EOF

run 0 config "$mtl" config run.yaml --set training.epochs=5
has config.out "epochs: 5"
has config.out "kind: classification"
has config.out "method: ew"

# --- train -------------------------------------------------------------------------------
run 0 train "$mtl" train run.yaml
has train.out "2 tasks"
has train.out "12 steps per epoch"    # 360 training rows / 30
has train.out "^epoch 1/3"
has train.out "^epoch 3/3"
has train.out "val.loss"
has train.out "accuracy"
has train.out "stopped: completed after 3 epochs, 36 steps"
has train.out "^test metrics:"
has train.out "^test.loss"
[ -s best.ckpt ] || fail "train wrote no best.ckpt"
[ -s last.ckpt ] || fail "train wrote no last.ckpt"
lines=$(wc -l <run.jsonl)
[ "$lines" -eq 3 ] || fail "run.jsonl has $lines records, expected 3"
has run.jsonl '"val": {"loss"'

# --- info, predict, eval -----------------------------------------------------------------
run 0 info "$mtl" info best.ckpt
has info.out "libmtl checkpoint"
has info.out "heads: 2"
has info.out "class: 1 layers, loss cross_entropy"
has info.out "optimizer: adam"

run 0 predict "$mtl" predict best.ckpt data/test_x.npy out.npy
[ -f out_class.npy ] && [ -f out_value.npy ] || fail "predict did not write out_class.npy and out_value.npy"
# 100 rows: float32 [100, 10] and [100, 1] after a 128-byte .npy header
size=$(wc -c <out_class.npy)
[ "$size" -eq $((128 + 100 * 10 * 4)) ] || fail "out_class.npy has $size bytes"
size=$(wc -c <out_value.npy)
[ "$size" -eq $((128 + 100 * 4)) ] || fail "out_value.npy has $size bytes"
has predict.out "out_class.npy: 100 x 10 (probabilities)"
run 0 predict_raw "$mtl" predict best.ckpt data/test_x.npy raw.npy --raw
has predict_raw.out "raw_value.npy: 100 x 1 (raw)"

run 0 eval_npy "$mtl" eval best.ckpt data/test_x.npy class=data/test_class.npy value=data/test_value.npy
has eval_npy.out "^test.loss"
has eval_npy.out "class .*accuracy"
has eval_npy.out "value .*r2"
run 0 eval_cfg "$mtl" eval best.ckpt run.yaml
has eval_cfg.out "^test.loss"
# the same checkpoint on the same rows: the same numbers both ways
a=$(grep '^test.loss' eval_npy.out); b=$(grep '^test.loss' eval_cfg.out)
[ "$a" = "$b" ] || fail "eval of .npy files and of the configuration differ: '$a' vs '$b'"
run 0 eval_val "$mtl" eval best.ckpt run.yaml --split validation
has eval_val.out "^validation.loss"
run 2 eval_nolabels "$mtl" eval best.ckpt data/test_x.npy
has eval_nolabels.err "no labels given"
run 2 eval_badtask "$mtl" eval best.ckpt data/test_x.npy age=data/test_value.npy
has eval_badtask.err "has no task 'age'"

# --- errors ------------------------------------------------------------------------------
printf 'tasks:\n  value: {kind: regression}\ntraining:\n  batch_size: -4\n' >bad.yaml
run 2 bad_config "$mtl" train bad.yaml
has bad_config.err "^mtl: bad.yaml:4:15: training.batch_size = -4 is out of range"
run 2 bad_set "$mtl" train run.yaml --set training.epoch=2
has bad_set.err "^mtl: --set 'training.epoch=2', column 1: unknown key 'epoch' in training (did you mean 'epochs'?)"
run 2 bad_set_form "$mtl" train run.yaml --set epochs
has bad_set_form.err "expects KEY=VALUE"
run 1 missing_ckpt "$mtl" info nothing.ckpt
has missing_ckpt.err "^mtl: .*nothing.ckpt"
run 1 missing_data "$mtl" train run.yaml --set data.dir=nowhere
has missing_data.err "^mtl: run.yaml:4:12: "
run 3 numeric "$mtl" train run.yaml --set optimizer.kind=sgd --set optimizer.lr=1e20 \
  --set training.checkpoint_path= --set training.checkpoint_every=0 --set training.log_path=
has numeric.err "not finite"

# --- resume: an interrupted run continues from its last checkpoint ---------------------
rm -f best.ckpt* last.ckpt* run.jsonl
# stop in the middle of epoch 2 (max_steps 18 of 12 per epoch); last.ckpt holds epoch 1
run 0 interrupted "$mtl" train run.yaml --set training.max_steps=18
has interrupted.out "stopped: max_steps after 1 epochs, 18 steps"
[ -s last.ckpt ] && [ -s last.ckpt.trainer ] || fail "no periodic checkpoint after epoch 1"
run 0 resumed "$mtl" train run.yaml --resume last.ckpt
has resumed.out "resumed from last.ckpt after epoch 1 (step 12)"
lacks resumed.out "^epoch 1/3"
has resumed.out "^epoch 2/3"
has resumed.out "stopped: completed after 3 epochs, 36 steps"
# the same three epochs in one go end in the same model: the same test numbers
rm -f best.ckpt* last.ckpt* run.jsonl
run 0 straight "$mtl" train run.yaml
a=$(grep -A3 '^test metrics' resumed.out); b=$(grep -A3 '^test metrics' straight.out)
[ "$a" = "$b" ] || fail "the resumed run's test metrics differ from an uninterrupted run's:
$a
---
$b"
# training.resume resumes when the file exists and starts afresh when it does not
run 0 resume_key "$mtl" train run.yaml --set training.resume=none.ckpt --set training.epochs=1
lacks resume_key.out "resumed from"
run 1 resume_missing "$mtl" train run.yaml --resume none.ckpt
has resume_missing.err "^mtl: --resume none.ckpt"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "mtl command line: all checks passed"
