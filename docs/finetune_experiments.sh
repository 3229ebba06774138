#!/bin/bash
# The experiments behind docs/finetune.md (run from the repository root; each writes runs/<round>/<name>/).

# --- 3-seed round (runs/final) ---
# 3 seeds x 4 candidate configs, one thread per process, all in parallel (the machine is shared).
# Selection between the two configs of each method: mean validation accuracy over the 3 seeds.
cd /work/main
R="python -m tn_peft.cli finetune --no-progress --threads 1"
go() { name=$1; shift; (echo "== $name $*"; /usr/bin/time -v $R -o runs/final/$name "$@" 2>&1 | grep -v -i warn | tail -30) > runs/final/$name.log 2>&1 & }
for s in 0 1 2; do
  go qpL1-s$s --seed $s --lr 3e-2 --lr-diag 3e-2
  go qpL3-s$s --seed $s --lr 3e-2 --lr-diag 3e-2 --set layers=3
  go lora1e-3-s$s --seed $s --graph none --compare lora:lr=1e-3 --no-floor
  go lora3e-3-s$s --seed $s --graph none --compare lora:lr=3e-3 --no-floor
done
wait

# --- Quantum-PEFT levers (runs/wave2) ---
# quantum_peft levers after the 3-seed round (validation only, seed 0, one thread each, in parallel)
cd /work/main
R="python -m tn_peft.cli finetune --no-test --no-save --no-progress --threads 1 --seed 0"
go() { name=$1; shift; (echo "== $name $*"; $R -o runs/wave2/$name "$@" 2>&1 | grep -v -i warn | tail -4) > runs/wave2/$name.log 2>&1 & }
go L3_a1e-1 --set layers=3 --lr 1e-1 --lr-diag 3e-2
go L3_d1e-1 --set layers=3 --lr 3e-2 --lr-diag 1e-1
go L3_r8 --set layers=3 --set rank=8 --lr 3e-2 --lr-diag 3e-2
go L3_400steps --set layers=3 --lr 3e-2 --lr-diag 3e-2 --steps 400
wait

# --- the best lever of the second part on 3 seeds (runs/final) ---
R="python -m tn_peft.cli finetune --no-progress --threads 1"
go() { name=$1; shift; (echo "== $name $*"; $R -o runs/final/$name "$@" 2>&1 | grep -v -i warn | tail -4) > runs/final/$name.log 2>&1 & }
for s in 0 1 2; do
  go qpL3d1e-1-s$s --seed $s --set layers=3 --lr 3e-2 --lr-diag 1e-1
done
wait

# --- deeper circuits and more targets (runs/wave3; a later session, seed 0, validation only) ---
cd /work/main
R="python -m tn_peft.cli finetune --no-test --no-save --no-progress --threads 1 --seed 0"
mkdir -p runs/wave3
$R -o runs/wave3/L6 --set layers=6 > runs/wave3/L6.log 2>&1 &
$R -o runs/wave3/L3_all --targets query key value attention.output.dense intermediate.dense output.dense > runs/wave3/L3_all.log 2>&1 &
wait

# --- alpha (a later session, seed 0, validation only) ---
cd /work/main
R="python -m tn_peft.cli finetune --no-test --no-save --no-progress --threads 1 --seed 0"
mkdir -p runs/wave4
$R -o runs/wave4/alpha32 --set layers=3 --set alpha=32 > runs/wave4/alpha32.log 2>&1 &
$R -o runs/wave4/alpha2 --set layers=3 --set alpha=2 > runs/wave4/alpha2.log 2>&1 &
wait

# --- round 14: rank with its scale held, basis states, schedules, angle decay, wire sizes (seed 0, validation only;
#     two to four runs at a time; each row of docs/finetune.md round 14 is one line here) ---
F="tn-peft finetune --threads 1 --no-progress --no-save --no-floor --no-test"
mkdir -p runs/r14
$F -o runs/r14/default                                          # 78.38, the reference
$F -o runs/r14/lora4 --graph none --compare lora:r=4:alpha=8:lr=3e-3
$F -o runs/r14/ia3 --graph none --compare ia3:lr=3e-2
for k in 16 32 64 128 384; do $F -o runs/r14/k$k --set rank=$k --set alpha=$((2 * k)); done
$F -o runs/r14/k64-L1 --set rank=64 --set alpha=128 --set layers=1
$F -o runs/r14/k128-s12 --set rank=128 --set alpha=256 --seed 1 2
$F -o runs/r14/spread --set basis=spread
$F -o runs/r14/spread-L1 --set basis=spread --set layers=1
$F -o runs/r14/cosine --schedule cosine
$F -o runs/r14/cosine-s12 --schedule cosine --seed 1 2
$F -o runs/r14/constant --schedule constant
$F -o runs/r14/adecay1e-3 --angle-decay 1e-3
$F -o runs/r14/adecay1e-2 --angle-decay 1e-2
for w in "4 1" "4 3" "6 1" "6 3" "12 1"; do set -- $w; $F -o runs/r14/mw$1-L$2 --set max_wire=$1 --set layers=$2; done
# the setting chosen on validation (cosine), taken to test on three seeds, then pooled into the frontier (the
# frontier.json it pooled is the one before that row; run on today's, the row is already there and is refused as a duplicate)
tn-peft finetune --threads 1 --no-progress --no-save --no-floor -o runs/rt-qp-L3-cosine --schedule cosine --seed 0 1 2
tn-peft frontier docs/frontier-rotten-tomatoes/frontier.json runs/rt-qp-L3-cosine -o docs/frontier-rotten-tomatoes \
    --title "Rotten Tomatoes (by movie): MiniLM, 200 steps, query+value, 3 seeds"
# the main job's new default (four modules) on BBC News and the debates, and with cosine decay on Rotten Tomatoes
Q="--targets query key value attention.output.dense"
tn-peft finetune --threads 1 --no-progress --no-save --no-floor -o runs/bbc-qp-4t --data bbc-news $Q --seed 0 1 2
tn-peft finetune --threads 1 --no-progress --no-save --no-floor -o runs/deb-qp-4t --data debates-2016 $Q --seed 0 1 2
tn-peft finetune --threads 1 --no-progress --no-save --no-floor -o runs/rt-qp-4t-cosine --schedule cosine $Q --seed 0 1 2 --no-test
