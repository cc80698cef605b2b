"""Malformed catalog files (apps, categories, base stations) fail with the file and line named."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from umask.runtime.core.catalog import load_coordinates, load_llmapp_catalog, load_official_catalog
from umask.runtime.core.errors import DataFormatError

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"


def _official_copy(tmp_path: Path) -> Path:
    for name in ("App2Category.txt", "Categorys.txt", "base_poi.txt.gz"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def test_app2category_bad_line(tmp_path: Path) -> None:
    folder = _official_copy(tmp_path)
    lines = (folder / "App2Category.txt").read_text().splitlines()
    lines[9] = "9 4 extra"
    (folder / "App2Category.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"App2Category.txt:10: expected 2 fields"):
        load_official_catalog(folder)


def test_app_with_unknown_category(tmp_path: Path) -> None:
    folder = _official_copy(tmp_path)
    with open(folder / "App2Category.txt", "a") as fh:
        fh.write("\n5000 77\n")  # the shipped file has no final newline
    with pytest.raises(DataFormatError, match="unknown category ids \\[77\\]"):
        load_official_catalog(folder)


def test_categories_without_any_valid_line(tmp_path: Path) -> None:
    folder = _official_copy(tmp_path)
    (folder / "Categorys.txt").write_text("'wechat','linkedin'\n")
    with pytest.raises(DataFormatError, match="Categorys.txt"):
        load_official_catalog(folder)


def test_base_poi_negative_count(tmp_path: Path) -> None:
    folder = _official_copy(tmp_path)
    with gzip.open(folder / "base_poi.txt.gz", "rt") as fh:
        lines = fh.read().splitlines()
    fields = lines[3].split("\t")
    fields[2] = "-1"
    lines[3] = "\t".join(fields)
    with gzip.open(folder / "base_poi.txt.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"base_poi.txt.gz:4: negative POI count"):
        load_official_catalog(folder)


def test_llmapp_location_bad_coordinate(tmp_path: Path) -> None:
    for name in ("llmapp_app.csv", "llmapp_category.csv"):
        shutil.copy(DATA / name, tmp_path / name)
    with gzip.open(DATA / "llmapp_location.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    fields = lines[5].split(",")
    fields[2] = "131.2"  # latitude out of range
    lines[5] = ",".join(fields)
    (tmp_path / "llmapp_location.csv").write_text("\n".join(lines[:20]) + "\n")
    with pytest.raises(DataFormatError, match=r"llmapp_location.csv:6: coordinates out of range"):
        load_llmapp_catalog(tmp_path)


def test_official_coordinates_file(tmp_path: Path) -> None:
    catalog = load_official_catalog(DATA)
    assert not catalog.stations.has_coordinates
    coords = tmp_path / "coords.csv"
    coords.write_text("base_id,latitude,longitude\n0,31.2,121.4\n5,31.3,121.5\n")
    table = load_coordinates(catalog.stations, coords)
    assert table.has_coordinates and table.lat[0] == 31.2 and table.lon[5] == 121.5
    coords.write_text("base_id,latitude,longitude\n999999,31.2,121.4\n")
    with pytest.raises(DataFormatError, match=r"coords.csv:2: unknown base station 999999"):
        load_coordinates(catalog.stations, coords)
