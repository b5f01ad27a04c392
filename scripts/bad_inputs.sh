#!/usr/bin/env bash
# Feeds dfa the bad inputs of docs/reliability.md and prints, for each, the exit code, the peak
# memory (max RSS) and the first line of its error, as the rows of a Markdown table:
#   scripts/bad_inputs.sh [DATA_DIR=../shared/data]    (needs target/release/dfa)
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="$(realpath "${1:-${DFA_DATA:-../shared/data}}")"
B="$PWD/target/release/dfa"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
M="$DATA/mnist"
SMALL="--model 2x100 --train-subset 2000 --test-subset 500 --threads 1"

# a data folder with MNIST's files, one of which a case replaces
fresh() { rm -rf "$T/d"; mkdir -p "$T/d/mnist"; cp "$M"/*.gz "$T/d/mnist/"; }
row() { # row DESCRIPTION -- COMMAND...
  local what="$1"; shift 2
  /usr/bin/time -f "%M" -o "$T/rss" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local msg; msg="$(grep -m1 -E '^error|^dfa:|^[a-z]' "$T/err" | cut -c1-220)"
  [ $rc -eq 0 ] && msg="(accepted) $(tail -1 "$T/out" | cut -c1-120)"
  printf '| %s | %s | %s MB | %s |\n' "$what" "$rc" "$(( $(tail -1 "$T/rss") / 1024 ))" "${msg//|/\\|}"
}
idx_header() { python3 -c "import struct,sys; d=[int(x) for x in sys.argv[2:]]; sys.stdout.buffer.write(struct.pack('>BBBB',0,0,8,len(d))+b''.join(struct.pack('>I',x) for x in d))" "$@"; }

echo '| input | exit | peak RSS | message |'
echo '| --- | ---: | ---: | --- |'

fresh; (idx_header x 60000 28 28; head -c 400M /dev/zero) | gzip -1 > "$T/d/mnist/train-images-idx3-ubyte.gz"
row "train images: gzip bomb, header 60000×28×28, inflates to 400 MB" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; idx_header x 4000000000 28 28 | gzip > "$T/d/mnist/train-images-idx3-ubyte.gz"
row "train images: header declares 4e9×28×28" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; (gzip -dc "$M/train-images-idx3-ubyte.gz"; echo garbage) | gzip > "$T/d/mnist/train-images-idx3-ubyte.gz"
row "train images: 8 bytes after the declared data" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; (cat "$M/train-labels-idx1-ubyte.gz"; echo garbage) > "$T/d/mnist/train-labels-idx1-ubyte.gz"
row "train labels: garbage after the gzip stream" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; gzip -dc "$M/train-labels-idx1-ubyte.gz" > "$T/l"; (head -c 30000 "$T/l" | gzip; tail -c +30001 "$T/l" | gzip) > "$T/d/mnist/train-labels-idx1-ubyte.gz"
row "train labels: a valid two-member gzip file" -- $B train --data-dir "$T/d" $SMALL --max-epochs 1 --out "$T/o" --name multi
fresh; cp "$M/train-images-idx3-ubyte.gz" "$T/d/mnist/train-labels-idx1-ubyte.gz"
row "train labels: an image file (magic 00000803)" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; idx_header x 0 28 28 | gzip > "$T/d/mnist/train-images-idx3-ubyte.gz"; idx_header x 0 | gzip > "$T/d/mnist/train-labels-idx1-ubyte.gz"
row "train images and labels: 0 images" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; (idx_header x 10000 14 56; gzip -dc "$M/t10k-images-idx3-ubyte.gz" | tail -c +17) | gzip > "$T/d/mnist/t10k-images-idx3-ubyte.gz"
row "test images: 14×56, training images 28×28" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
fresh; head -c 1000000 "$M/train-images-idx3-ubyte.gz" > "$T/d/mnist/train-images-idx3-ubyte.gz"
row "train images: gzip cut at 1 MB" -- $B train --data-dir "$T/d" $SMALL --out "$T/o"
row "data folder without MNIST" -- $B train --data-dir "$T/nothing" $SMALL --out "$T/o"
row "net 2x100000" -- $B train --data-dir "$DATA" --model 2x100000 --out "$T/o"
row "--threads 1000" -- $B train --data-dir "$DATA" --threads 1000 --out "$T/o"
printf 'model = "2x100"\nlearning_rate = "fast"\n' > "$T/bad.toml"
row "config: learning_rate = \"fast\"" -- $B train --data-dir "$DATA" --config "$T/bad.toml" --out "$T/o"
printf 'model = "2x100"\nlearning_rat = 0.1\n' > "$T/bad.toml"
row "config: unknown field learning_rat" -- $B train --data-dir "$DATA" --config "$T/bad.toml" --out "$T/o"

# run folders
$B train --data-dir "$DATA" $SMALL --max-epochs 3 --out "$T/r" --name done >/dev/null 2>&1
cp -r "$T/r/done" "$T/r/edited"; rm "$T/r/edited/summary.json"; sed -i 's/^seed = .*/seed = 7/' "$T/r/edited/config.toml"
row "resume: seed edited in config.toml" -- $B train --resume "$T/r/edited"
row "resume: the same with --accept-changes" -- $B train --resume "$T/r/edited" --accept-changes
row "resume with --seed 3" -- $B train --resume "$T/r/done" --seed 3
fresh; cp "$DATA/mnist/t10k-labels-idx1-ubyte.gz" "$T/d/mnist/train-labels-idx1-ubyte.gz" 2>/dev/null
cp -r "$T/r/done" "$T/r/moved"
row "eval from another folder, data moved (--data-dir)" -- bash -c "cd / && $B eval $T/r/moved --data-dir $DATA"
fresh; mv "$T/d/mnist/t10k-labels-idx1-ubyte.gz" "$T/x"; gzip -dc "$T/x" | (head -c 8; gzip -dc "$T/x" | tail -c +9 | tr '\000\001' '\001\000') | gzip > "$T/d/mnist/t10k-labels-idx1-ubyte.gz"
row "eval with other data (labels changed, same format)" -- $B eval "$T/r/done" --data-dir "$T/d"
cp -r "$T/r/done" "$T/r/cut"; rm "$T/r/cut/summary.json"; truncate -s 5000 "$T/r/cut/checkpoint.safetensors"
row "resume: checkpoint cut at 5000 bytes" -- $B train --resume "$T/r/cut"
$B train --data-dir "$DATA" --model 2x800 --threads 1 --max-epochs 5 --out "$T/r" --name busy >/dev/null 2>&1 & sleep 3
row "train: --resume of a run another process is training" -- $B train --resume "$T/r/busy"
row "eval of a run another process is training" -- $B eval "$T/r/busy"
kill %1 2>/dev/null; wait
