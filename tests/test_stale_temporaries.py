"""A shard's sweep of leftover temporaries must not delete another shard's file in flight."""

import os
import time

from unilvseg.io import TMP_PREFIX, remove_stale_temporaries


def test_sweep_spares_fresh_temporaries_when_asked(tmp_path):
    fresh, old = tmp_path / f"{TMP_PREFIX}fresh.npz", tmp_path / f"{TMP_PREFIX}old.npz"
    fresh.write_bytes(b"in flight")
    old.write_bytes(b"left by a killed writer")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert remove_stale_temporaries(tmp_path, min_age_s=3600) == 1
    assert fresh.is_file() and not old.exists()
    assert remove_stale_temporaries(tmp_path) == 1 and not fresh.exists()  # unsharded: every leftover goes
