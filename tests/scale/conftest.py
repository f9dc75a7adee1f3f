"""The scale-out tests' data and an S3 endpoint (the local Ray cluster, ``ray_cluster``, is in tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import cifar_images
from tests.core.images import write_bad_collection


@pytest.fixture(scope="session")
def mixed_images(tmp_path_factory) -> list[Path]:
    """Real photos plus the bad inputs: truncated, zero-byte, text, and the other awkward files."""
    bad = tmp_path_factory.mktemp("bad")
    names = write_bad_collection(bad)
    return [*cifar_images(per_class=4), *(bad / name for name in sorted(names))]


@pytest.fixture
def s3_store(monkeypatch):
    """A bucket on moto's S3-compatible server on 127.0.0.1; yields its ``s3://`` store URI.

    The endpoint and credentials reach Lance (and CLI subprocesses) through the usual AWS
    environment variables, as a user's would."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    # moto keeps its buckets in process-wide memory, across servers: a fresh bucket per test
    bucket = f"iconograph-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/store"
    server.stop()


@pytest.fixture(scope="session")
def tiny_owlvit_model(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_owlvit

    return save_tiny_owlvit(tmp_path_factory.mktemp("models") / "tiny-owlvit", version=1)


@pytest.fixture(scope="session")
def tiny_blip_model(tmp_path_factory) -> Path:
    from iconograph.testing import save_tiny_blip

    return save_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")
