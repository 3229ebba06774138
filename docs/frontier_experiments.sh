#!/usr/bin/env bash
# The runs behind the README's frontier (docs/frontier_*.md / .png), one command each as they ran
# (one torch thread per process, two processes at a time on the 2-core machine). Each writes a run
# folder under runs/; `tn-peft frontier` then pools them. Settings with several learning rates were
# chosen on validation by --tune at seed 0; the others use the choice made on Rotten Tomatoes.
set -euo pipefail
F="tn-peft finetune --threads 1 --no-progress --no-save"
# Rotten Tomatoes (split by movie; 3,200 / 800 / 2,000)
$F -o runs/rt-head --graph none --compare head --seed 0 1 2
$F -o runs/rt-qp-L3 --seed 0 1 2                                   # the default: quantum_peft L = 3
$F -o runs/rt-qp-L1 --set layers=1 --seed 0 1 2
$F -o runs/rt-qp-all6-L1 --set layers=1 --targets query key value attention.output.dense intermediate.dense output.dense --seed 0 1 2
$F -o runs/rt-lora-r4 --graph none --compare lora:r=4:alpha=8:lr=3e-3 --no-floor --seed 0 1 2
$F -o runs/rt-lora-r1 --graph none --compare lora:r=1:alpha=8:lr=1e-2,3e-2 --no-floor --tune --seed 0 1 2
$F -o runs/rt-lora-r1-a2 --graph none --compare lora:r=1:alpha=2:lr=3e-3,1e-2 --no-floor --tune --seed 0 1 2
$F -o runs/rt-ia3 --graph none --compare ia3:lr=3e-2,1e-1 --no-floor --tune --seed 0 1 2
$F -o runs/rt-vera-r256 --graph none --compare vera:r=256:lr=3e-2,1e-1 --no-floor --tune --seed 0 1 2
$F -o runs/rt-fourierft-n100 --graph none --compare fourierft:n=100:lr=1e-1,3e-1 --no-floor --tune --seed 0 1 2
$F -o runs/rt-tinylora --graph none --compare tinylora:lr=3e-3,3e-2 --no-floor --tune --seed 0 1 2
$F -o runs/rt-unilora --graph none --compare unilora:lr=3e-3,3e-2 --no-floor --tune --seed 0 1 2
tn-peft frontier runs/rt-head runs/rt-qp-L3 runs/rt-qp-L1 runs/rt-qp-all6-L1 runs/rt-lora-* runs/rt-ia3 runs/rt-vera-r256 runs/rt-fourierft-n100 runs/rt-tinylora runs/rt-unilora -o docs/frontier-rotten-tomatoes --title "Rotten Tomatoes (by movie), MiniLM, 200 steps, 3 seeds"
# BBC News (5 topics; 1,200 / 400 / 600), the learning rates chosen on Rotten Tomatoes
$F -o runs/bbc-head --data bbc-news --graph none --compare head --seed 0 1 2
$F -o runs/bbc-qp --data bbc-news --seed 0 1 2
$F -o runs/bbc-lora-r4 --data bbc-news --graph none --compare lora:r=4:alpha=8:lr=3e-3 --no-floor --seed 0 1 2
$F -o runs/bbc-lora-r1 --data bbc-news --graph none --compare lora:r=1:alpha=2:lr=1e-2 --no-floor --seed 0   # seeds 1 and 2: bbc-lora-r1-s12 below
$F -o runs/bbc-ia3 --data bbc-news --graph none --compare ia3:lr=3e-2 --no-floor --seed 0 1 2
$F -o runs/bbc-qp-L1 --data bbc-news --set layers=1 --seed 0 1 2
$F -o runs/bbc-vera-r256 --data bbc-news --graph none --compare vera:r=256:lr=3e-2 --no-floor --seed 0 1 2
$F -o runs/bbc-fourierft-n100 --data bbc-news --graph none --compare fourierft:n=100:lr=3e-1 --no-floor --seed 0 1 2
$F -o runs/bbc-tinylora --data bbc-news --graph none --compare tinylora:lr=3e-3 --no-floor --seed 0 1 2
$F -o runs/bbc-unilora --data bbc-news --graph none --compare unilora:lr=3e-3 --no-floor --seed 0 1 2
$F -o runs/bbc-lora-r1-s12 --data bbc-news --graph none --compare lora:r=1:alpha=2:lr=1e-2 --no-floor --seed 1 2
tn-peft frontier runs/bbc-head runs/bbc-qp runs/bbc-qp-L1 runs/bbc-lora-r4 runs/bbc-lora-r1 runs/bbc-lora-r1-s12 runs/bbc-ia3 runs/bbc-vera-r256 runs/bbc-fourierft-n100 runs/bbc-tinylora runs/bbc-unilora -o docs/frontier-bbc-news --title "BBC News: MiniLM, 200 steps, query+value, 3 seeds"
# The harder task: who said it in the 2016 debates (9 speakers; 600 / 200 / 322), the Rotten Tomatoes learning rates
$F -o runs/deb-head --data debates-2016 --graph none --compare head --seed 0 1 2
$F -o runs/deb-qp --data debates-2016 --seed 0 1 2 --no-floor
$F -o runs/deb-lora-r4 --data debates-2016 --graph none --compare lora:r=4:alpha=8:lr=3e-3 --no-floor --seed 0 1 2
$F -o runs/deb-fourierft-n100 --data debates-2016 --graph none --compare fourierft:n=100:lr=3e-1 --no-floor --seed 0 1 2
$F -o runs/deb-lora-r1 --data debates-2016 --graph none --compare lora:r=1:alpha=2:lr=1e-2 --no-floor --seed 0 1 2
tn-peft frontier runs/deb-head runs/deb-qp runs/deb-fourierft-n100 runs/deb-lora-r1 runs/deb-lora-r4 -o docs/frontier-debates-2016 --title "2016 debates, who said it (9 speakers): MiniLM, 200 steps, query+value, 3 seeds"
# Budget-adaptive Quantum-PEFT (issue 26; README "A parameter budget"): `budget: B` prunes a wider start to at most
# B parameters during training (tn_peft.model.budget). Start: all six linear layers, rank 8, the depth L whose count
# (744 + 1200 L + 36 k for MiniLM) is about 1.5 B; quantum_peft's learning rates (lr 0.03, lr_diag 0.1, no grid, so
# no --tune). `budget_mode=grow` (tn_peft.model.budget_grow) starts at depth 0, rank 1 and grows to B, at most rank 8
# and the even depth given. Run after ec8a4e6 (the fix of the stale evaluation after a prune), two processes at a time
# as /work/runs-budget/lanes.sh ran them (that script skips finished folders).
ALL6="query key value attention.output.dense intermediate.dense output.dense"
for data in rotten-tomatoes bbc-news debates-2016; do
  tag=$(case $data in rotten-tomatoes) echo rt;; bbc-news) echo bbc;; debates-2016) echo deb;; esac)
  $F -o runs/$tag-qp-budget1500 --data $data --graph quantum_peft:budget=1500 --set layers=1 --set rank=8 --targets $ALL6 --seed 0 1 2
  $F -o runs/$tag-qp-budget3000 --data $data --graph quantum_peft:budget=3000 --set layers=3 --set rank=8 --targets $ALL6 --seed 0 1 2
  $F -o runs/$tag-qp-budget5000 --data $data --graph quantum_peft:budget=5000 --set layers=5 --set rank=8 --targets $ALL6 --seed 0 1 2
  $F -o runs/$tag-qp-budget9000 --data $data --graph quantum_peft:budget=9000 --set layers=10 --set rank=8 --targets $ALL6 --seed 0 1 2
done
# prune against grow (budget_mode=grow: most depth L = 2, 4, 6, 10 for B = 1,500, 3,000, 5,000, 9,000; rank 8):
# every budget on Rotten Tomatoes, and the budgets the CPU time allowed on BBC News and the debates
grow() {  # grow TAG DATA B L
  $F -o runs/$1-qp-grow$3 --data $2 --graph quantum_peft:budget=$3:budget_mode=grow --set layers=$4 --set rank=8 --targets $ALL6 --seed 0 1 2
}
grow rt rotten-tomatoes 1500 2; grow rt rotten-tomatoes 3000 4; grow rt rotten-tomatoes 5000 6; grow rt rotten-tomatoes 9000 10
grow bbc bbc-news 1500 2; grow bbc bbc-news 3000 4
grow deb debates-2016 1500 2; grow deb debates-2016 3000 4; grow deb debates-2016 5000 6; grow deb debates-2016 9000 10
# pooled into the saved frontiers (each finished folder; see docs/finetune.md for which ran)
tn-peft frontier docs/frontier-rotten-tomatoes/frontier.json runs/rt-qp-budget* runs/rt-qp-grow* -o docs/frontier-rotten-tomatoes --title "Rotten Tomatoes (by movie): MiniLM, 200 steps, query+value, 3 seeds"
tn-peft frontier docs/frontier-bbc-news/frontier.json runs/bbc-qp-budget* runs/bbc-qp-grow* -o docs/frontier-bbc-news --title "BBC News: MiniLM, 200 steps, query+value, 3 seeds"
tn-peft frontier docs/frontier-debates-2016/frontier.json runs/deb-qp-budget* runs/deb-qp-grow* -o docs/frontier-debates-2016 --title "2016 debates, who said it (9 speakers): MiniLM, 200 steps, query+value, 3 seeds"
# the importance check (docs/budget_importance.png / .json)
python docs/budget_importance.py 100
