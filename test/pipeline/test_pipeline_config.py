"""PipelineConfig: one source of defaults, two named presets, nothing diverging silently."""

from __future__ import annotations

import dataclasses

import pytest

from fer_ros.pipeline import RUNTIME_SETTINGS, PipelineConfig
from fer_ros.pipeline.config import settings

pytestmark = pytest.mark.pipeline


def test_every_field_is_described_with_limits_that_hold_its_defaults() -> None:
    names = [f.name for f in dataclasses.fields(PipelineConfig)]
    described = dict(settings())
    assert list(described) == names
    for preset in (PipelineConfig(), PipelineConfig.live(), PipelineConfig.stills()):
        for name, setting in described.items():
            assert setting.description.strip(), name
            value = getattr(preset, name)
            if setting.limits is not None:
                assert setting.limits[0] <= value <= setting.limits[1], name
            if setting.choices is not None:
                assert value in setting.choices, name


def test_presets_differ_from_the_plain_config_only_where_they_say() -> None:
    plain = dataclasses.asdict(PipelineConfig())
    live = dataclasses.asdict(PipelineConfig.live())
    stills = dataclasses.asdict(PipelineConfig.stills())
    assert {k for k in plain if live[k] != plain[k]} == {
        "full_detection_interval", "async_detection", "search_change_threshold",
        "async_reembed", "idle_detection_rate", "search_max_width"}
    assert live["full_detection_interval"] == 5 and live["async_detection"] is True
    assert live["search_max_width"] == 1280 and plain["search_max_width"] == 0
    assert live["idle_detection_rate"] == 2.0 and live["search_change_threshold"] == 40.0
    assert {k for k in plain if stills[k] != plain[k]} == {"tracking"}
    assert stills["tracking"] is False and stills["idle_detection_rate"] == 0.0
    # overrides win over the preset
    assert PipelineConfig.live(device="cpu", async_detection=False).async_detection is False


def test_runtime_settings_and_node_names() -> None:
    assert RUNTIME_SETTINGS == {
        "recognition_threshold", "recognition_margin", "emotion_smoothing",
        "full_detection_interval", "reembed_interval", "track_max_age",
        "detection_min_score", "idle_detection_rate", "idle_change_threshold",
        "idle_refresh_period", "search_change_threshold", "track_similarity",
        "track_reid_window"}
    config = PipelineConfig.from_values({"enable_tracking": False, "enable_emotion": False,
                                         "gallery_path": "ignored.json", "downscale": 0.5})
    assert (config.tracking, config.emotion, config.downscale) == (False, False, 0.5)
    assert config.detection_thresholds == (0.6, 0.7, 0.7)
