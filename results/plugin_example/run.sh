#!/bin/sh
# The tutorial's numbers (docs/writing-a-rule.md): the example plug-in against FA on MNIST, 10 epochs, seed 0.
set -e
cd "$(dirname "$0")/../.."
bpcompile run examples/rules/fa_redrawn.json --plugin examples/rules/fa_redrawn.py \
    --out results/plugin_example/fa_redrawn --overwrite --no-progress
bpcompile run examples/rules/fa_redrawn.json --set 'rule={"name": "fa"}' --set name=mnist_fc_fa_10_epochs \
    --out results/plugin_example/fa --overwrite --no-progress
