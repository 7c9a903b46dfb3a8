#!/usr/bin/env python
"""Label-free LV segmentation (Ferreira et al.): python train_labelfree.py --rounds 2 (see --help)."""
from unilvseg.cli.labelfree import main

if __name__ == "__main__":
    raise SystemExit(main())
