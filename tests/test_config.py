"""The settings object: safe defaults, parsed lists, and bad values that name themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from mediahub.config import Settings, VariantSpec, describe_settings_error, parse_image_sizes
from tests.support.watermarks import mark_file


def test_defaults_are_the_embedded_mode():
    settings = Settings(_env_file=None)
    assert settings.storage_type == "local" and settings.database_url.startswith("sqlite")
    assert settings.max_image_size == 20 * 1024 * 1024 and settings.max_video_size == 500 * 1024 * 1024
    assert [s.name for s in settings.image_sizes] == ["thumbnail", "small", "medium", "large"]
    assert settings.image_sizes[0] == VariantSpec("thumbnail", 150, 150, True)
    assert settings.strip_gps


def test_environment_is_read_only_when_settings_are_built(monkeypatch):
    monkeypatch.setenv("IMAGE_SIZES", "tiny:64x64:crop,big:2048")
    monkeypatch.setenv("ALLOWED_IMAGE_TYPES", "jpeg, png")
    settings = Settings(_env_file=None)
    assert settings.image_sizes == (VariantSpec("tiny", 64, 64, True), VariantSpec("big", 2048, 2048))
    assert settings.allowed_image_types == ("jpeg", "png")


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_IMAGE_SIZE", "lots"),
        ("STORAGE_TYPE", "ftp"),
        ("IMAGE_SIZES", "thumbnail:0x0"),
        ("ALLOWED_IMAGE_TYPES", "jpeg,svg"),
        ("DATABASE_URL", "oracle://x"),
        ("JPEG_QUALITY", "101"),
    ],
)
def test_a_bad_setting_fails_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert name in describe_settings_error(caught.value)


def test_sizes_need_unique_names():
    with pytest.raises(ValueError):
        parse_image_sizes("a:10,a:20")


def test_the_dedup_index_lives_in_its_own_setting_else_temp_dir_else_var(tmp_path):
    assert Settings(_env_file=None).dedup_index_directory == Path("var") / "dedup-index"
    assert Settings(_env_file=None, temp_dir=tmp_path).dedup_index_directory == tmp_path / "dedup-index"
    chosen = tmp_path / "shared"
    assert Settings(_env_file=None, temp_dir=tmp_path, dedup_index_dir=chosen).dedup_index_directory == chosen


def test_watermarks_are_read_from_json(monkeypatch, tmp_path):
    monkeypatch.delenv("WATERMARKS", raising=False)
    assert Settings(_env_file=None).watermarks == {}, "no field is watermarked unless configured"
    mark = mark_file(tmp_path)
    monkeypatch.setenv("WATERMARKS", json.dumps({"builder.portfolio": {
        "image": str(mark), "position": "top-left", "opacity": 0.3, "presets": ["medium", "large"]}}))
    watermark = Settings(_env_file=None).watermarks["builder.portfolio"]
    assert (watermark.image, watermark.position, watermark.opacity) == (mark, "top-left", 0.3)
    assert (watermark.scale, watermark.margin, watermark.min_width, watermark.presets) == (0.2, 0.02, 0, (
        "medium", "large"))


@pytest.mark.parametrize("fields, says", [
    ({"image": "missing.png"}, "does not point to a file"),
    ({"image": "not-an-image.png"}, "cannot read the mark image"),
    ({"image": "opaque.png"}, "has no alpha channel"),
    ({"opacity": 1.5}, "less than or equal to 1"),
    ({"opacity": 0}, "greater than 0"),
    ({"scale": 0}, "greater than 0"),
    ({"margin": 0.5}, "less than 0.5"),
    ({"min_width": -1}, "greater than or equal to 0"),
    ({"position": "middle"}, "bottom-right"),
    ({"presets": ["huge"]}, "'huge' is not in IMAGE_SIZES"),
    ({"presets": ["thumbnail"]}, "crops are never watermarked"),
    ({"presets": []}, "at least 1 item"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
])
def test_a_bad_watermark_fails_naming_the_setting(monkeypatch, tmp_path, fields, says):
    (tmp_path / "not-an-image.png").write_text("hello")
    mark_file(tmp_path, alpha=None, name="opaque.png")
    fields = {"image": str(mark_file(tmp_path)), **fields}
    if not fields["image"].startswith("/"):
        fields["image"] = str(tmp_path / fields["image"])
    monkeypatch.setenv("WATERMARKS", json.dumps({"builder.portfolio": fields}))
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    described = describe_settings_error(caught.value)
    assert "WATERMARKS" in described and says in described
