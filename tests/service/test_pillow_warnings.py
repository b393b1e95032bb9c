"""Pillow's warnings about hostile files: a few logged, the rest counted, nothing remembered."""

from __future__ import annotations

import io
import logging
import time
import warnings

import pytest
from PIL import Image, TiffImagePlugin
from testkit.hostile import tiff_bad_tags

from service import pillow_warnings
from service.pillow_warnings import RateLimitedLog


def test_a_burst_is_logged_then_counted_and_the_count_logged_when_the_window_turns(caplog) -> None:
    limited = RateLimitedLog(burst=3, window_s=0.2)
    with caplog.at_level(logging.WARNING, logger="service.images"):
        for i in range(10):
            limited.warning(f"bad tag {i}")
        time.sleep(0.25)
        limited.warning("one more")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["Pillow: 'bad tag 0'", "Pillow: 'bad tag 1'", "Pillow: 'bad tag 2'",
                     "more than 3 Pillow warnings in 0 s: the rest are counted, not logged",
                     "7 more Pillow warning(s) about uploaded images were not logged", "Pillow: 'one more'"]


def test_text_from_the_file_is_logged_with_repr_and_cut(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="service.images"):
        RateLimitedLog().warning("forged\nINFO service: all is well" + "x" * 1000)
    line = caplog.records[0].getMessage()
    assert "\n" not in line and "\\n" in line and len(line) < 300


def test_a_tiff_with_4000_bad_tags_logs_a_few_lines_and_leaves_no_registry(caplog, monkeypatch) -> None:
    monkeypatch.setattr(pillow_warnings, "_pillow_log", RateLimitedLog())
    pillow_warnings.install()  # pytest restores the warning filters and hook after the test
    registry = vars(TiffImagePlugin).setdefault("__warningregistry__", {})
    registry.clear()
    with caplog.at_level(logging.WARNING, logger="service.images"):
        image = Image.open(io.BytesIO(tiff_bad_tags()))
        image.load()
    assert len(caplog.records) == pillow_warnings.BURST + 1  # the burst, then "the rest are counted"
    assert "Tag data larger than file" in caplog.records[0].getMessage()
    assert len([key for key in registry if key != "version"]) == 0  # "always": no text remembered


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_other_warnings_are_left_alone() -> None:
    pillow_warnings.install()
    with pytest.raises(DeprecationWarning):
        warnings.warn("not Pillow's", DeprecationWarning)
