"""lrpcli.audit.where: the border, quadrant and outside-the-box shares, and the box files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lrpcli.audit.where import REGIONS, BoxError, box_on_map, read_boxes, where


def test_a_corner_blob_is_border_and_top_left() -> None:
    rmap = np.zeros((40, 40), dtype=np.float32)
    rmap[0:3, 0:3] = 1.0
    rmap[20, 20] = -5.0  # negative relevance does not count
    shares = where(rmap)
    assert shares["border"] == pytest.approx(1.0) and shares["top_left"] == pytest.approx(1.0)
    assert shares["bottom_right"] == 0.0 and shares["outside_box"] is None


def test_uniform_relevance_shares_are_areas() -> None:
    shares = where(np.ones((40, 40), dtype=np.float32), border=0.1)
    assert shares["border"] == pytest.approx(1 - (32 * 32) / (40 * 40))
    for key in ("top_left", "top_right", "bottom_left", "bottom_right"):
        assert shares[key] == pytest.approx(0.25)
    inside = where(np.ones((40, 40), dtype=np.float32), box=(10, 10, 30, 30))
    assert inside["outside_box"] == pytest.approx(1 - 400 / 1600)


def test_no_positive_relevance_has_no_shares() -> None:
    assert where(-np.ones((8, 8), dtype=np.float32)) == dict.fromkeys(REGIONS)
    with pytest.raises(ValueError, match="border"):
        where(np.ones((8, 8)), border=0.6)


def test_box_on_map_follows_the_crop() -> None:
    # a 400 x 300 photo whose centre 300 x 300 crop became a 100 x 100 map
    assert box_on_map((50, 0, 350, 300), (50.0, 0.0, 350.0, 300.0), 100, 100) == (0.0, 0.0, 100.0, 100.0)
    assert box_on_map((200, 150, 350, 300), (50.0, 0.0, 350.0, 300.0), 100, 100) == (50.0, 50.0, 100.0, 100.0)
    assert box_on_map((1, 2, 3, 4), None, 10, 10) == (1, 2, 3, 4)


def test_read_boxes_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("path,x0,y0,x1,y1\na.png,1,2,3,4\n# note\nb c.png,0,0,10,10\n", encoding="utf-8")
    assert read_boxes(tmp_path / "b.csv") == {"a.png": (1, 2, 3, 4), "b c.png": (0, 0, 10, 10)}
    (tmp_path / "b.json").write_text('{"a.png": [1, 2, 3, 4]}', encoding="utf-8")
    assert read_boxes(tmp_path / "b.json") == {"a.png": (1, 2, 3, 4)}
    for name, text, message in [
        ("e.csv", "a.png,1,2,3\n", "expected path,x0,y0,x1,y1"),
        ("f.csv", "a.png,3,2,1,4\n", "is empty"),
        ("g.json", "[1]", "expected an object"),
        ("h.json", '{"a": [1, "x", 2, 3]}', "four numbers"),
    ]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(BoxError, match=message):
            read_boxes(tmp_path / name)
    with pytest.raises(BoxError, match="cannot read"):
        read_boxes(tmp_path / "none.csv")
