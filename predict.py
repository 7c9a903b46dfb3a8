#!/usr/bin/env python
"""Segment the LV in every frame of every video: python predict.py --checkpoint C --save_dir S (see --help)."""
from unilvseg.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
