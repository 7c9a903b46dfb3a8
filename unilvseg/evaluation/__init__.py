"""Evaluation: Dice (ratio of sums), vectorised bootstrap intervals, method-of-disks volumes/EF,
the ``evaluate_bootstrap.py`` core and its plots.

Submodules are imported where used (``from unilvseg.evaluation.metrics import dice_counts``)
so that importing the package pulls in neither pandas, matplotlib nor torch.
"""
