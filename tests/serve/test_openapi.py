"""Property-based requests generated from the service's own OpenAPI document (schemathesis):
no 5xx, responses match their declared status codes and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance


@pytest.fixture(scope="module")
def served(shared_server):
    server, _ = shared_server
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json")
    # /runsync waits up to `wait` ms for a job by design; its input shapes are /run's.
    return server, {op.label: op for op in (r.ok() for r in schema.get_all_operations()) if "runsync" not in op.path}


EXPECTED = ["POST /v2/{endpoint_id}/run", "GET /v2/{endpoint_id}/status/{job_id}", "POST /v2/{endpoint_id}/status/{job_id}",
            "POST /v2/{endpoint_id}/cancel/{job_id}", "POST /v2/{endpoint_id}/retry/{job_id}",
            "POST /v2/{endpoint_id}/purge-queue", "GET /v2/{endpoint_id}/health",
            "GET /v2/{endpoint_id}/results/{job_id}/{filename}"]


@pytest.mark.parametrize("label", EXPECTED)
def test_operation_conforms_to_the_openapi_document(served, label):
    server, operations = served
    assert label in operations, sorted(operations)
    operation = operations[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        # Schema-valid input may still be refused: whether a base64 string is an image, or whether
        # exactly one of image/image_url is given, is beyond what the schema can say.
        case.call_and_validate(base_url=f"http://127.0.0.1:{server.port}", headers=server.headers, timeout=10,
                               excluded_checks=[positive_data_acceptance])

    check()
