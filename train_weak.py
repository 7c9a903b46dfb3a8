#!/usr/bin/env python
"""Weakly supervised LV segmentation: python train_weak.py --checkpoint SSL.ckpt (see --help)."""
from unilvseg.cli.train import main_weak

if __name__ == "__main__":
    raise SystemExit(main_weak())
