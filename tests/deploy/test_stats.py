import numpy as np
import pytest

from deploy.stats import LatencyStats


def test_percentiles_match_numpy():
    samples = list(np.random.default_rng(0).gamma(4.0, 2.0, size=101))
    s = LatencyStats.from_samples(samples, warmup=5, info={"runner": "test"})
    assert s.median_ms == pytest.approx(np.median(samples))
    assert s.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert s.p99_ms == pytest.approx(np.percentile(samples, 99))
    assert s.mean_ms == pytest.approx(np.mean(samples))
    assert s.cv == pytest.approx(np.std(samples) / np.mean(samples))
    assert s.runs == 101 and s.min_ms == min(samples)


def test_dict_round_trip():
    s = LatencyStats.from_samples([1.0, 2.0, 3.0], info={"threads": 2})
    back = LatencyStats.from_dict(s.to_dict(with_samples=True))
    assert back.to_dict(with_samples=True) == s.to_dict(with_samples=True)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])
