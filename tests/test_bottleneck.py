"""BottleneckDetector on synthetic curves."""

from __future__ import annotations

import pytest

from t3s.evals.bottleneck import BottleneckDetector


def run(values, **kw):
    detector = BottleneckDetector(**kw)
    fired = [detector.update(10 * i, v) for i, v in enumerate(values)]
    return detector, fired


def test_fires_once_recovery_is_confirmed():
    detector, fired = run([0.9, 0.6, 0.3, 0.33, 0.5, 0.7, 0.9], margin=0.05, patience=2)
    # min at step 20; 0.33 is inside the margin, 0.5 and 0.7 confirm -> fires at the 0.7 evaluation
    assert fired == [None, None, None, None, None, 20, None]
    assert detector.bottleneck_step == 20 and detector.final() == 20


def test_ties_resolve_to_the_earliest_step():
    detector, _ = run([0.8, 0.2, 0.2, 0.6, 0.7], margin=0.1, patience=2)
    assert detector.bottleneck_step == 10


@pytest.mark.parametrize("values", [[0.9, 0.8, 0.7, 0.5, 0.3, 0.1], [0.2, 0.4, 0.6, 0.8, 0.9], [0.5] * 6])
def test_does_not_fire_on_monotone_curves(values):
    detector, fired = run(values, margin=0.05, patience=2)
    assert all(f is None for f in fired) and detector.bottleneck_step is None


def test_final_falls_back_to_the_global_argmin():
    detector, _ = run([0.9, 0.8, 0.7, 0.5])
    assert detector.final() == 30
    falling_then_flat, _ = run([0.9, 0.1, 0.12])
    assert falling_then_flat.bottleneck_step is None and falling_then_flat.final() == 10
    assert BottleneckDetector().final() is None


def test_offline_from_curve_matches_online():
    steps, values = [0, 5, 10, 15, 20, 25], [1.0, 0.43, 0.5, 0.9, 1.0, 1.0]
    offline = BottleneckDetector.from_curve(list(reversed(steps)), list(reversed(values)), margin=0.2, patience=2)
    assert offline.bottleneck_step == 5


def test_train_accuracy_tag_follows_the_callbacks_avg_at_k(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from t3s.evals.bottleneck import TRAIN_ACCURACY_TAG, is_train_accuracy_tag
    from t3s.evals.scalars import read_scalars

    writer = SummaryWriter(str(tmp_path))
    for step, value in enumerate([0.9, 0.4, 0.2, 0.5, 0.8]):
        writer.add_scalar("bench/train/avg@4", value, 10 * step)
        writer.add_scalar("bench/math500/avg@4", 0.1, 10 * step)
    writer.close()
    assert is_train_accuracy_tag("bench/train/avg@4") and not is_train_accuracy_tag("bench/math500/avg@4")
    assert read_scalars(tmp_path, TRAIN_ACCURACY_TAG) == ([0, 10, 20, 30, 40], pytest.approx([0.9, 0.4, 0.2, 0.5, 0.8]))
    assert BottleneckDetector.from_run(tmp_path, margin=0.05, patience=2).final() == 20
