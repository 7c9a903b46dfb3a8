#!/usr/bin/env python
"""Self-supervised pre-training: python train_ssl.py --mask_ratio 0.6 (see --help)."""
from unilvseg.cli.train import main_ssl

if __name__ == "__main__":
    raise SystemExit(main_ssl())
