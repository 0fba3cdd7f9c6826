"""Attacks on the library's tag filter and review forms: bounded like the list API, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

PAGE = "/library/property/P1"


@pytest.mark.parametrize("params", [
    [("tag", ",".join(f"t{n}" for n in range(2000)))],  # one form field, thousands of tags
    [("tag", "a,b,c,d,e,f"), ("tag", "g,h,i,j,k,l")],  # 12 tags in two fields
    [("tag", "x" * 65)],  # longer than any tag
])
def test_the_entity_page_refuses_a_filter_the_list_api_refuses(client: TestClient, params: list[tuple[str, str]]):
    for path in (PAGE, f"{PAGE}/tiles"):
        answer = client.get(path, params=[*params, ("field", "gallery")])
        assert answer.status_code == 422, (path, answer.status_code)


def test_the_entity_page_takes_ten_comma_separated_tags(client: TestClient):
    answer = client.get(PAGE, params={"tag": ",".join(f"t{n}" for n in range(10))})
    assert answer.status_code == 200
