"""Model compression on top of the zoo's tables: structured channel pruning (:mod:`zoo.compress.prune`)."""

from zoo.compress.prune import PRUNABLE_BLOCKS, prune_model, pruned_arch, save_pruned_checkpoint

__all__ = ["PRUNABLE_BLOCKS", "prune_model", "pruned_arch", "save_pruned_checkpoint"]
