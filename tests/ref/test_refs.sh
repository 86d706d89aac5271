#!/bin/sh
# Check the independent NumPy references (tests/ref, numpy + stdlib only, no
# attnc code) against the logits Hugging Face transformers computed for the
# fixtures in tests/data/hf.  One line per model; exits non-zero on any failure.
#
#   tests/ref/test_refs.sh [RTOL_L2]      (default 1e-5)
set -u
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../data/hf"
py=/usr/bin/python3
bound=${1:-1e-5}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

status=0
"$py" "$here/safetensors_np.py" || status=1
for case in gpt2:gpt2-tiny llama:llama-tiny-gqa llama:llama-tiny-tied; do
    model=${case%%:*} name=${case#*:}
    d="$data/$name"
    if ! "$py" "$here/run_ref.py" "$model" "$d" "$d/input_ids.npy" "$tmp/$name.npy" 2>"$tmp/err"; then
        echo "$name: FAIL: run_ref.py failed: $(tail -n 1 "$tmp/err")"
        status=1
        continue
    fi
    line=$("$py" "$here/compare.py" "$tmp/$name.npy" "$d/logits.npy" --rtol-l2 "$bound") || status=1
    echo "$name: $line"
done
exit $status
