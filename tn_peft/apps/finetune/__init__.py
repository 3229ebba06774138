"""Fine-tune a pretrained encoder on real text data with any graph adapter, side by side with LoRA.

``tn-peft finetune`` is :func:`tn_peft.apps.finetune.run.run`; its options are in
:mod:`tn_peft.cli.finetune`. The pieces: :mod:`.data` (offline data sets, grouped
split, tokenization), :mod:`.userdata` (users' data files: the contract, the checked split, the
summary), :mod:`.runfolder` (no run overwritten unasked, unfinished runs marked), :mod:`.methods` (the
classifier and how it is adapted), :mod:`.train` (the
loop, timing, peak memory), :mod:`.report` (table, metrics.json, curves.png), :mod:`.grid` (the
``--compare`` / ``--graph`` specs), :mod:`.frontier` (accuracy against parameters).

The package imports none of them.
"""
