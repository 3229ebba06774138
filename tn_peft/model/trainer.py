"""transformers' ``Trainer`` for a :class:`~tn_peft.model.model.TnPeftModel`: checkpoints hold adapter files.

transformers' ``Trainer`` saves adapters only for ``PreTrainedModel`` / ``peft.PeftModel``; given any other
module, ``save_model`` and every ``checkpoint-N`` hold the whole model's ``model.safetensors``, and
``load_best_model_at_end`` / ``resume_from_checkpoint`` load that back. :class:`TnPeftTrainer` is a
drop-in replacement (same arguments) that, for a TnPeftModel, writes and reads tn_peft's adapter files::

    from tn_peft.model.trainer import TnPeftTrainer

    trainer = TnPeftTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev)  # was Trainer(...)
    trainer.train()                       # checkpoint-N/: adapter_config.json + adapter_model.safetensors
    trainer.save_model("out")             # the same files: tn_peft.from_pretrained(base, "out") loads them
    trainer.train(resume_from_checkpoint=True)   # loads the adapters back into the model, in place

It overrides three ``Trainer`` methods, the places where transformers special-cases ``PeftModel``:

- ``_save`` (behind ``save_model`` and the periodic checkpoints): ``model.save_pretrained(output_dir)``
  -- every adapter, non-default ones in subfolders (:meth:`TnPeftModel.save_pretrained`) -- plus what
  ``Trainer`` writes beside the model (the processing class, ``training_args.bin``);
- ``_load_from_checkpoint`` (``resume_from_checkpoint``) and ``_load_best_model``
  (``load_best_model_at_end``): copies each of the model's adapters back from the checkpoint, in place,
  so that the optimizer (whose state ``Trainer`` restores beside) keeps the same parameters; the
  checkpoint must hold every adapter of the model with the same graph (else :class:`CheckpointError`).
  PEFT's path instead calls ``load_adapter`` for the first active adapter only.

It also takes the default ``label_names`` / ``can_return_loss`` from the base model's class, as
``Trainer`` does for a ``PeftModel``, so evaluation reports ``eval_loss`` (what ``load_best_model_at_end``
compares by default). Models other than a TnPeftModel go through ``Trainer`` unchanged. Not covered:
DeepSpeed ZeRO-3 and sharded FSDP, whose ``_save`` receives a gathered state dict (it is ignored here:
the adapter tensors are read from the live model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, require
from .model import TnPeftModel

require("transformers", "'tn_peft[hf]'", "tn_peft.model.trainer")
from transformers import Trainer
from transformers.utils import can_return_loss, find_labels

TRAINING_ARGS_NAME = "training_args.bin"  # transformers.trainer.TRAINING_ARGS_NAME


def load_adapters_in_place(model: TnPeftModel, directory: str | Path) -> None:
    """Copy every adapter of ``model`` from ``directory`` (as written by ``save_pretrained``), in place; each
    saved adapter must have the model's graph spec (``adapter_config.json``'s ``graph``), else CheckpointError."""
    from ..io import checkpoint as ckpt

    directory = Path(directory)
    for name in model.peft_config:
        folder = ckpt.adapter_directory(directory, name)
        if not (folder / ckpt.CONFIG_NAME).is_file():
            raise CheckpointError(f"{directory}: no files for adapter {name!r} (expected {folder / ckpt.CONFIG_NAME}); "
                                  f"the checkpoint was not written by TnPeftTrainer for this model's adapters "
                                  f"({', '.join(model.peft_config)})")
        saved = ckpt.read_adapter_config(folder)["graph"]
        if saved != json.loads(json.dumps(model.networks[name].to_spec())):
            raise CheckpointError(f"{folder / ckpt.CONFIG_NAME}: adapter {name!r} was saved with another graph "
                                  f"({saved.get('name', '?')!r}) than the model's ({model.networks[name].name!r}, "
                                  f"or the same one with other graph_args / alpha)")
        model._load_weights(folder, name)


class TnPeftTrainer(Trainer):
    """``transformers.Trainer`` that saves and loads a TnPeftModel's adapter files (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model = self._tn_model()
        if model is not None:
            base_class = model.get_base_model().__class__
            if self.args.label_names is None:
                self.label_names = find_labels(base_class)
            self.can_return_loss = can_return_loss(base_class)

    def _tn_model(self) -> TnPeftModel | None:
        """The TnPeftModel being trained (unwrapped from DDP / torch.compile), or None for other models."""
        model = self.model
        if not isinstance(model, TnPeftModel):
            model = self.accelerator.unwrap_model(model)
            model = getattr(model, "_orig_mod", model)
        return model if isinstance(model, TnPeftModel) else None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self._tn_model()
        if model is None:
            super()._save(output_dir, state_dict=state_dict)
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model.save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        elif getattr(self.data_collator, "tokenizer", None) is not None:
            self.data_collator.tokenizer.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        tn_model = self._tn_model()
        if tn_model is None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        load_adapters_in_place(tn_model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        model = self._tn_model()
        if model is None:
            super()._load_best_model()
            return
        load_adapters_in_place(model, self.state.best_model_checkpoint)
