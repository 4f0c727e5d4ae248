#!/bin/sh
# Shrink corpus/TARGET to at most MAX (default 200) inputs that add coverage beyond seeds/TARGET:
# libFuzzer's merge measures every input, edge_cover.py keeps the greedy set cover. Run from
# anywhere after `RUSTC_BOOTSTRAP=1 cargo fuzz build -a`.
#
#     fuzz/minimise.sh token [200]
set -eu
target=$1
max=${2:-200}
cd "$(dirname "$0")"
bin=target/x86_64-unknown-linux-gnu/release/$target
tmp=$(mktemp -d)
mkdir "$tmp/merged" "$tmp/kept"
"$bin" -merge=1 -merge_control_file="$tmp/control" "$tmp/merged" "seeds/$target" "corpus/$target" \
    2>"$tmp/merge.log" || { tail -20 "$tmp/merge.log"; exit 1; }
python3 edge_cover.py "$tmp/control" "$max" >"$tmp/keep"
while read -r f; do cp "$f" "$tmp/kept/"; done <"$tmp/keep"
rm -rf "corpus/$target"
mv "$tmp/kept" "corpus/$target"
rm -rf "$tmp"
echo "corpus/$target: $(ls "corpus/$target" | wc -l) files, $(du -sk "corpus/$target" | cut -f1) KiB"
