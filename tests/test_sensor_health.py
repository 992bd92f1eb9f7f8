"""Sensor-health checks as a pure stage: stuck, stale, out of range and rate on the synthetic pump."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.config import ConfigError, SensorsConfig
from monitor.core.sensor_health import SensorHealth, SensorLimits, SensorLimitsError, learn_limits
from monitor.core.synthetic import CHANNELS, pump
from monitor.core.types import Alert

STREAM = "site1/pump1"
P = CHANNELS.index("pressure")


def learned(cfg: SensorsConfig | None = None) -> SensorLimits:
    t, v, _ = pump(3000, seed=1)
    return learn_limits([(t, v, np.ones(len(t), dtype=bool))], CHANNELS, cfg or SensorsConfig())


def feed(health: SensorHealth, t: np.ndarray, v: np.ndarray, chunk: int = 50) -> list[Alert]:
    alerts: list[Alert] = []
    for i in range(0, len(t), chunk):
        health.queue_rows(STREAM, t[i : i + chunk], v[i : i + chunk])
        alerts += health.process()
    return alerts


def make(cfg: SensorsConfig | None = None, limits: SensorLimits | None = None) -> SensorHealth:
    cfg = cfg or SensorsConfig()
    return SensorHealth(cfg, CHANNELS, "v1", 1.0, limits)


def test_stuck_pressure_is_detected_within_15_samples_once() -> None:
    health = make(limits=learned())
    t, v, _ = pump(2000, seed=2)
    v[1000:1400, P] = v[1000, P]  # the transmitter freezes at its last value
    alerts = feed(health, t, v)
    assert [(a.kind, a.cause, a.channel, a.state) for a in alerts] == [
        ("sensor", "stuck", "pressure", "firing"),
        ("sensor", "stuck", "pressure", "resolved"),
    ]
    assert alerts[0].started_at - t[1000] < 15.0  # 1 s per sample
    assert t[1400] <= alerts[1].ended_at <= t[1400] + 10


def test_clean_noisy_data_gives_no_sensor_alarm() -> None:
    health = make(limits=learned())
    t, v, _ = pump(10_000, seed=3)
    assert feed(health, t, v, chunk=97) == []


def test_batching_does_not_change_the_alerts() -> None:
    t, v, _ = pump(600, seed=4)
    v[200:300, P] = v[200, P]
    v[400, 0] = 1e4  # out of the learned range
    limits = learned()
    whole = feed(make(limits=limits), t, v, chunk=600)
    one_by_one = make(limits=limits)
    alerts: list[Alert] = []
    for i in range(len(t)):
        one_by_one.queue_row(STREAM, float(t[i]), v[i])
        if i % 7 == 0:
            alerts += one_by_one.process()
    alerts += one_by_one.process()
    assert [a.to_dict() for a in whole] == [a.to_dict() for a in alerts]
    assert {(a.cause, a.channel) for a in whole} == {("stuck", "pressure"), ("out_of_range", "flow")}


def test_identical_values_are_stuck_without_learned_limits() -> None:
    health = make(SensorsConfig(identical_samples=20))  # an old bundle: no learned floor
    t, v, _ = pump(300, seed=5)
    v[100:, 2] = v[100, 2]
    alerts = feed(health, t, v)
    assert [(a.cause, a.channel, a.state) for a in alerts] == [("stuck", "current", "firing")]
    assert alerts[0].started_at == t[119]  # the 20th identical value


def test_a_channel_flat_in_training_is_not_stuck_when_flat() -> None:
    t, v, _ = pump(1000, seed=6)
    v[:, 4] = 50.0  # a set point: constant in training
    cfg = SensorsConfig(identical_samples=20)
    limits = learn_limits([(t, v, np.ones(len(t), dtype=bool))], CHANNELS, cfg)
    assert limits.noise_floor[4] == 0.0 and limits.max_flat_run[4] == 1000
    t2, v2, _ = pump(500, seed=7)
    v2[:, 4] = 50.0
    assert feed(make(cfg, limits), t2, v2) == []


def test_configured_range_fires_once_per_episode_and_resolves() -> None:
    cfg = SensorsConfig(ranges={"temperature": [0.0, 100.0]}, clear_samples=3)
    health = make(cfg)
    t, v, _ = pump(200, seed=8)
    v[50:60, 4] = 150.0
    alerts = feed(health, t, v, chunk=13)
    assert [(a.cause, a.channel, a.state) for a in alerts] == [
        ("out_of_range", "temperature", "firing"),
        ("out_of_range", "temperature", "resolved"),
    ]
    assert alerts[0].started_at == t[50] and alerts[0].value == 150.0
    assert alerts[1].ended_at == t[62]  # the third good sample
    assert alerts[0].alert_id == alerts[1].alert_id


def test_learned_range_catches_a_value_far_outside_training() -> None:
    health = make(limits=learned())
    t, v, _ = pump(200, seed=9)
    v[80, P] = -5.0  # a broken loop reads below zero
    alerts = feed(health, t, v)
    assert [(a.cause, a.channel, a.state) for a in alerts] == [
        ("out_of_range", "pressure", "firing"),
        ("out_of_range", "pressure", "resolved"),
    ]


def test_rate_limit_from_config() -> None:
    health = make(SensorsConfig(max_rate={"flow": 20.0}))
    t, v, _ = pump(200, seed=10)  # flow noise sd 1 per second: far below 20/s
    v[100, 0] += 60.0
    alerts = feed(health, t, v)
    assert [(a.cause, a.channel, a.state) for a in alerts] == [("rate", "flow", "firing"), ("rate", "flow", "resolved")]
    assert alerts[0].started_at == t[100]


def test_a_gap_resets_the_rate_history() -> None:
    health = make(SensorsConfig(max_rate={"flow": 20.0}))
    health.queue_rows(STREAM, np.array([0.0, 1.0]), np.full((2, 5), 1.0))
    health.queue_gap(STREAM)
    health.queue_rows(STREAM, np.array([30.0, 31.0]), np.full((2, 5), 100.0))
    assert health.process() == []


def test_stale_fires_once_and_resolves_when_the_channel_reports() -> None:
    health = make(SensorsConfig(stale_seconds=10.0))
    last = [100.0] * 5
    assert health.tick(1000.0, {STREAM: last}) == []
    for now in range(1001, 1011):  # every channel but vibration keeps reporting
        last = [float(now - 900)] * 3 + [100.0, float(now - 900)]
        assert health.tick(float(now), {STREAM: last}) == []
    alerts = health.tick(1011.0, {STREAM: [111.0] * 3 + [100.0, 111.0]})
    assert [(a.cause, a.channel, a.state, a.started_at) for a in alerts] == [("stale", "vibration", "firing", 1000.0)]
    assert health.tick(1012.0, {STREAM: [112.0] * 3 + [100.0, 112.0]}) == []  # still stale: no second firing
    assert health.faulty(STREAM) == ["vibration"]
    alerts = health.tick(1013.0, {STREAM: [113.0] * 5})
    assert [(a.cause, a.channel, a.state, a.ended_at) for a in alerts] == [("stale", "vibration", "resolved", 1013.0)]


def test_old_timestamps_are_not_stale_while_they_keep_arriving() -> None:
    health = make(SensorsConfig(stale_seconds=5.0))
    for now in range(100):  # a backlog replayed: data time a day behind the clock, advancing
        assert health.tick(1e6 + now, {STREAM: [float(now)] * 5}) == []


def test_a_channel_that_never_reported_goes_stale() -> None:
    health = make(SensorsConfig(stale_seconds=5.0))
    never = float("-inf")
    assert health.tick(10.0, {STREAM: [10.0] * 4 + [never]}) == []
    alerts = health.tick(16.0, {STREAM: [16.0] * 4 + [never]})
    assert [(a.cause, a.channel) for a in alerts] == [("stale", "temperature")]


def test_alert_dict_carries_kind_cause_and_channel() -> None:
    health = make(SensorsConfig(ranges={"flow": [0.0, 1.0]}))
    health.queue_rows(STREAM, np.array([1.0]), np.full((1, 5), 5.0))
    (alert,) = health.process()
    d = alert.to_dict()
    assert (d["kind"], d["cause"], d["channel"], d["state"], d["value"]) == (
        "sensor",
        "out_of_range",
        "flow",
        "firing",
        5.0,
    )


def test_limits_round_trip_and_bad_files_are_refused() -> None:
    limits = learned()
    assert SensorLimits.from_bytes(limits.to_bytes()) == limits
    with pytest.raises(SensorLimitsError, match="noise_floor"):
        SensorLimits.from_bytes(limits.to_bytes().replace(b'"noise_floor": [', b'"noise_floor": [1, '))
    with pytest.raises(SensorLimitsError, match="not JSON"):
        SensorLimits.from_bytes(b"{")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"stuck_window": 1}, "sensors.stuck_window"),
        ({"identical_samples": 1}, "sensors.identical_samples"),
        ({"ranges": {"flow": [5.0, 1.0]}}, "sensors.ranges.flow"),
        ({"ranges": {"flow": [1.0]}}, "sensors.ranges.flow"),
        ({"max_rate": {"flow": -1.0}}, "sensors.max_rate.flow"),
        ({"clear_samples": 0}, "sensors.clear_samples"),
        ({"stale_seconds": -1.0}, "sensors.stale_seconds"),
    ],
)
def test_config_is_validated_with_clear_errors(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        SensorsConfig(**kwargs)
    assert exc.value.key == key


def test_a_floor_learned_over_another_window_is_not_used_but_ranges_are() -> None:
    health = make(SensorsConfig(stuck_window=20), limits=learned())  # the bundle learned over 10
    assert not health.th.floor.any()
    assert np.isfinite(health.th.low).all() and np.isfinite(health.th.high).all()


def _quantized_pump(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pump with pressure read on a coarse grid: consecutive repeats are common in
    training, never `stuck_window` of them in a row."""
    t, v, _ = pump(n, seed=seed)
    step = 0.5 * np.diff(v[:, P]).std() / np.sqrt(2)  # half the sample-to-sample noise
    v[:, P] = np.round(v[:, P] / step) * step
    return t, v


def _mask_rows(health: SensorHealth, t: np.ndarray, v: np.ndarray, chunk: int) -> tuple[np.ndarray, list[Alert]]:
    """Per row, whether pressure is masked; and the alerts, feeding `chunk` rows at a time."""
    rows, alerts = [], []
    for i in range(0, len(t), chunk):
        health.queue_rows(STREAM, t[i : i + chunk], v[i : i + chunk])
        alerts += health.process()
        m = health.masks(STREAM, t[i : i + chunk])
        rows.append(np.zeros(len(t[i : i + chunk]), dtype=bool) if m is None else m[:, P])
    return np.concatenate(rows), alerts


@pytest.mark.parametrize("chunk", [1, 37])
def test_a_quantized_channel_held_on_one_step_is_alerted_and_masks_only_after_identical_samples(chunk: int) -> None:
    """SKAB's flow rate is read in whole units: a quiet process holds it on one value for
    ten seconds, and masking it there hid the valve fault (decision 0018, addendum 3).
    Such a window is alerted (under the noise floor) and scored; only `identical_samples`
    equal values in a row, a sensor's signature, mask it, from that row on."""
    cfg = SensorsConfig()
    tt, vv = _quantized_pump(3000, seed=1)
    limits = learn_limits([(tt, vv, np.ones(len(tt), dtype=bool))], CHANNELS, cfg)
    assert 2 <= limits.max_flat_run[P] < cfg.stuck_window and limits.noise_floor[P] > 0
    t, v = _quantized_pump(600, seed=2)
    v[200:230, P] = v[200, P]  # 30 samples on one step: a quiet process
    v[400:520, P] = v[400, P]  # 120 samples: a stuck sensor
    masked, alerts = _mask_rows(make(cfg, limits), t, v, chunk)
    stuck = [(a.state, a.started_at) for a in alerts if a.cause == "stuck" and a.channel == "pressure"]
    assert stuck[0] == ("firing", t[200 + cfg.stuck_window - 1])  # alerted at once, by the floor
    assert not masked[:400].any()  # ... and scored
    run = 400  # where the equal values begin (the rows before may sit on the same step)
    while v[run - 1, P] == v[400, P]:
        run -= 1
    assert ("firing", t[run + cfg.stuck_window - 1]) in stuck
    first = int(np.flatnonzero(masked)[0])
    assert first == run + cfg.identical_samples - 1  # masked from the 60th equal value
    assert masked[first:520].all()


def test_a_continuous_channel_with_a_window_of_no_change_masks_at_once() -> None:
    """A channel that never repeated a value in training: a whole window without change is
    a sensor's signature, masked from the row it fired at."""
    cfg = SensorsConfig()
    limits = learned(cfg)
    assert limits.max_flat_run[P] == 1
    t, v, _ = pump(400, seed=2)
    v[200:260, P] = v[200, P]
    masked, alerts = _mask_rows(make(cfg, limits), t, v, 50)
    assert int(np.flatnonzero(masked)[0]) == 200 + cfg.stuck_window - 1
    assert any(a.cause == "stuck" and a.state == "firing" for a in alerts)
