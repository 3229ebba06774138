"""Graphs as structure, no torch: a YAML spec (:mod:`.spec`, its expression language :mod:`.expressions`)
becomes a :class:`~tn_peft.graph.network.Network` (nodes, legs, symbolic sizes); :mod:`.sizes` evaluates
the sizes for one layer shape (splitting a size into factor legs with :mod:`tn_peft.factorize`),
:mod:`.draw` renders a network. The catalog of shipped graphs is the ``catalog/`` folder.

Nothing here imports torch or :mod:`tn_peft.model` when imported, and loading, validating and sizing a
graph stays torch-free too: node kinds' options are checked against :mod:`tn_peft.nodes.kinds` (tests hold
it to that). Only ``Network.build`` (making the Adapter) reaches torch.
"""
