"""The analytics page: for moderators and admins; charts drawn on the server, each an SVG image with a title,
a description and one bar per number, and the same numbers in a table."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from jinja2.filters import do_filesizeformat
from sqlalchemy import update

from mediahub.api.library.charts import bar_chart, column_chart, nice_ceiling
from mediahub.db.models import MediaItem, utcnow
from tests.api.conftest import CORPUS_DIR, Tokens, upload
from tests.support.html import Element, parse

FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def charts(page: Element) -> dict[str, Element]:
    return {svg.attrs["data-chart"]: svg for svg in page.find_all("svg", class_="chart")}


def table_rows(page: Element, name: str) -> list[list[str]]:
    table = page.find("table", data_numbers=name)
    return [[cell.text for cell in row.find_all() if cell.tag in ("th", "td")]
            for row in table.find("tbody").find_all("tr")]


def test_the_page_is_for_moderators_and_admins(client: TestClient, signed_in) -> None:
    assert client.get("/library/analytics", follow_redirects=False).status_code == 303
    signed_in("USR-1")
    answer = client.get("/library/analytics")
    assert answer.status_code == 403 and "moderator_required" in answer.text
    client.cookies.clear()
    signed_in("MOD-1", ("user", "moderator"))
    assert client.get("/library/analytics").status_code == 200
    assert client.get("/library/analytics?days=0").status_code == 422


def test_every_chart_is_an_accessible_image_with_a_bar_per_number(client: TestClient, tokens: Tokens,
                                                                   signed_in) -> None:
    owner = tokens.header("USR-9")  # their own cover, unverified: pending, a second status
    sizes = []
    for entity, caller in (("properties/1/photos", tokens.admin()), ("properties/2/photos", tokens.admin()),
                           ("users/USR-9/avatar", tokens.admin()), ("users/USR-9/cover", owner)):
        answer = upload(client, f"/v1/media/{entity}", caller, file=FLOWER)
        assert answer.status_code == 201, answer.text
        sizes.append(answer.json()["byte_size"])
    signed_in("MOD-1", ("user", "moderator"))

    page = parse(client.get("/library/analytics?days=90").text)
    shown = charts(page)
    assert set(shown) == {"uploads", "storage-entity-type", "storage-media-type", "storage-moderation-status",
                          "variant-overhead"}
    for name, svg in shown.items():
        assert svg.attrs["role"] == "img"
        title, description = svg.find("title", id=f"{name}-title"), svg.find("desc", id=f"{name}-desc")
        assert svg.attrs["aria-labelledby"] == f"{name}-title {name}-desc" and title.text and description.text
        per_row = 2 if name == "variant-overhead" else 1  # a kind's originals and its variants
        assert len(svg.find_all("rect", class_="bar")) == per_row * len(table_rows(page, name)), name

    assert table_rows(page, "storage-entity-type")[0][:2] == ["property", "2"]  # the largest first
    assert [row[0] for row in table_rows(page, "storage-moderation-status")] == ["approved", "pending"]
    assert table_rows(page, "storage-media-type")[0][:3] == ["image", "4", do_filesizeformat(sum(sizes))]
    assert [row[0] for row in table_rows(page, "variant-overhead")] == ["image"]
    assert len(table_rows(page, "uploads")) == 90
    assert "4 items uploaded" in shown["uploads"].find("desc").text


def test_uploads_over_time_are_counted_per_day(client: TestClient, tokens: Tokens, signed_in) -> None:
    today = utcnow().date()
    noon = datetime.combine(today, time(12), timezone.utc)
    ages = [0, 0, 3, 3, 3, 12, 45]  # days ago
    for n, days_ago in enumerate(ages):
        item = upload(client, f"/v1/media/properties/{n}/photos", tokens.admin(), file=FLOWER).json()
        with client.app.state.runtime.database.session() as session:  # type: ignore[attr-defined]
            session.execute(update(MediaItem).where(MediaItem.id == item["id"])
                            .values(created_at=noon - timedelta(days=days_ago)))
    signed_in("ADM-2", ("user", "admin"))

    page = parse(client.get("/library/analytics?days=30").text)
    counts = {row[0]: int(row[1]) for row in table_rows(page, "uploads") if row[1] != "0"}
    assert counts == {str(today): 2, str(today - timedelta(days=3)): 3, str(today - timedelta(days=12)): 1}
    bars = charts(page)["uploads"].find_all("rect", class_="bar")
    assert len(bars) == 30
    heights = [float(bar.attrs["height"]) for bar in bars]
    assert heights[-1] * 3 == pytest.approx(heights[-4] * 2) and heights[-1] > 0  # 2 and 3: proportional
    assert heights.count(0.0) == 27

    months = parse(client.get("/library/analytics?days=1095").text)
    assert sum(int(row[1]) for row in table_rows(months, "uploads")) == len(ages)
    assert all(row[0].split()[0] in {"January", "February", "March", "April", "May", "June", "July", "August",
                                     "September", "October", "November", "December"}
               for row in table_rows(months, "uploads"))


def test_chart_geometry() -> None:
    bars = bar_chart("c", "Sizes", [("a", 100), ("b", 50), ("nothing", 0)])
    assert [bar.width for bar in bars.bars] == [250.0, 125.0, 0.0]
    assert "a: 100; b: 50; nothing: 0" in bars.description
    columns = column_chart("t", "Per day", [("1", 0), ("2", 7), ("3", 3)])
    assert [bar.height for bar in columns.bars] == [0.0, 134.4, 57.6]  # of 192 for the top of the axis, 10
    assert [label.text for label in columns.labels if label.role == "axis"][:3] == ["0", "5", "10"]
    assert [label.text for label in column_chart("t", "Few", [("1", 4)]).labels][:2] == ["0", "5"]  # no 2.5
    assert [nice_ceiling(n) for n in (0, 1, 7, 10, 11, 180, 2001)] == [1, 1, 10, 10, 20, 200, 5000]
