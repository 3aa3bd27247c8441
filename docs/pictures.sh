#!/usr/bin/env bash
# Regenerate the README's screenshots in docs/ from the sample photos, with the defaults:
#   bash docs/pictures.sh        (after make install; about a minute on two CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
lrp=.venv/bin/lrp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$lrp" explain sample_images/coffee.png sample_images/grace_hopper.jpg -o "$work/one" -q
"$lrp" explain sample_images/chelsea.png -o "$work/grid" -q \
    --composites config,epsilon_plus_flat,epsilon_gamma_box,epsilon_alpha2_beta1
cp "$work/one/coffee.heatmap.png" "$work/one/coffee.overlay.png" "$work/one/grace_hopper.overlay.png" docs/
cp "$work/grid/chelsea.compare.png" docs/
ls -l docs/coffee.heatmap.png docs/coffee.overlay.png docs/grace_hopper.overlay.png docs/chelsea.compare.png
