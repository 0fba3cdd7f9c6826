"""Schemathesis over every operation of the OpenAPI document, as an admin: never a 5xx.

Against a real `mediahub serve` process (SQLite, local disk). The short form runs in CI;
`python -m bench.reliability` runs more examples per operation.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.reliability.harness import ServerProcess, admin, running, scale, server_env, tally

EXAMPLES = scale(4, 30)


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("schemathesis")
    env = server_env(f"sqlite:///{work / 'st.db'}", media_root=work / "media", temp_dir=work / "spool",
                     upload_read_timeout_seconds=5)
    with running(env, work / "server") as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(schema_server: ServerProcess):
    spec = requests.get(f"{schema_server.url}/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(spec)


def test_no_operation_answers_5xx(api_schema, schema_server: ServerProcess) -> None:
    """Each operation in turn (its own Hypothesis run); every 5xx is collected, then reported together."""
    session = requests.Session()
    failures: list[tuple[str, int, str]] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    spec_operations = sum(len(ops) for ops in api_schema.raw_schema["paths"].values())
    assert len(operations) == spec_operations >= 20  # every operation of the document

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case) -> None:
            response = case.call(base_url=schema_server.url, session=session, headers=admin(), timeout=30)
            tally(schema_calls=1, schema_5xx=int(response.status_code >= 500))
            if response.status_code >= 500:
                failures.append((case.as_curl_command(), response.status_code, response.text[:300]))

        run()
        assert schema_server.alive(), f"the server died during {operation.label}"
    tally(schema_operations=len(operations))
    assert failures == [], (failures[:5], schema_server.log()[-3000:])
