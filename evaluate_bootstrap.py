#!/usr/bin/env python
"""Evaluate predict.py outputs with bootstrap CIs: python evaluate_bootstrap.py --data_dir D --prediction_dir P --output_dir O (see --help)."""

from unilvseg.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
