"""The settings object: safe defaults, parsed lists, and bad values that name themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mediahub.config import Settings, VariantSpec, describe_settings_error, parse_image_sizes


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
