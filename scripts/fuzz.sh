#!/usr/bin/env bash
# Fuzzes the parsers of everything a user can hand to dfa, each target for a fixed time:
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`), and the data folder
# ($DFA_DATA, else ../shared/data) for the seed corpora, which are written here (not committed:
# they are cut from the data sets). Prints, per target, the executions and whether it crashed;
# a crash leaves its input in fuzz/artifacts/TARGET/ (turn it into a test in tests/fuzz_props.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(idx gzip cifar checkpoint config)
DATA="${DFA_DATA:-../shared/data}"

# seed corpora: small valid inputs of each kind
python3 scripts/fuzz_seeds.py --data-dir "$DATA" --out fuzz/corpus
cargo build --release -q
for spec in "2x16 rmsprop" "16 sgd"; do
  set -- $spec
  name="seed-$1-$2"
  rm -rf "/tmp/dfa-fuzz-$name"
  target/release/dfa train --data-dir "$DATA" --model "$1" --optimiser "$2" --train-subset 64 \
    --test-subset 64 --max-epochs 1 --threads 1 --out /tmp/dfa-fuzz-$name --name run >/dev/null 2>&1
  cp "/tmp/dfa-fuzz-$name/run/checkpoint.safetensors" "fuzz/corpus/checkpoint/$name.safetensors"
  cp "/tmp/dfa-fuzz-$name/run/config.toml" "fuzz/corpus/config/$name.toml"
done
for f in experiments/*.toml; do cp "$f" "fuzz/corpus/config/experiment-$(basename "$f")"; done

cargo +nightly fuzz build -O >/dev/null 2>&1
printf '%-11s %12s %10s %s\n' target executions seconds result
for t in "${TARGETS[@]}"; do
  log="fuzz/artifacts/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  set +e
  cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=1024 -max_len=262144 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  if [ $rc -eq 0 ]; then result="no crash"; else result="CRASH (rc $rc, see $log)"; fi
  printf '%-11s %12s %10s %s\n' "$t" "${execs:-?}" "$SECONDS_PER_TARGET" "$result"
done
