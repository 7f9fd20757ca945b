"""The contract package: torch-free, one table of error codes, errors that cross processes intact,
and gRPC messages that carry only what their sender set."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from contract import critic_pb2 as pb
from contract import errors
from contract.errors import ERRORS, CriticError, ServiceError, VideoTooLargeError
from contract.protocol import ErrorBody, ModelInfo
from contract.sampling import FrameSampling
from serving import grpc_convert

ROOT = Path(__file__).resolve().parents[1]


def test_the_contract_imports_without_torch_transformers_or_ray():
    code = ("import json, sys\n"
            "import contract.errors, contract.sampling, contract.protocol, contract.video\n"
            "import contract.critic_pb2, contract.critic_pb2_grpc\n"
            "print(json.dumps([m for m in ('torch', 'transformers', 'ray', 'critic', 'serving', 'clients') "
            "if m in sys.modules]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_the_error_table_needs_nothing_but_the_standard_library():
    code = "import contract.errors, sys; print(sorted(m for m in ('pydantic', 'numpy', 'grpc', 'av') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_typed_error_has_an_http_and_a_grpc_status():
    import critic.data.ratings  # noqa: F401  (its errors are typed too)
    import serving.auth  # noqa: F401

    for cls in _subclasses(CriticError):
        if cls is ServiceError:
            continue
        assert cls.code in ERRORS, cls
    for code, status in ERRORS.items():
        assert 400 <= status.http < 600 and status.grpc in grpc.StatusCode.__members__, code
        assert status.grpc in errors.GRPC_TO_HTTP, code  # a client reads every status the service sends
    bad_input = [c for c, s in ERRORS.items() if s.http in (415, 422)]
    assert all(ERRORS[c].grpc == "INVALID_ARGUMENT" for c in bad_input)  # never INTERNAL for bad input
    with pytest.raises(ValueError, match="not in contract.errors.ERRORS"):
        ServiceError("no_such_code", "x")


def test_errors_cross_a_process_boundary_with_every_field():
    """Ray ships a deployment's exception to its caller by pickling it."""
    for e in (VideoTooLargeError("too big", limit="max_bytes", value=3),
              ServiceError("overloaded", "busy", retry_after=2.0, details={"queue": 5})):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and back.code == e.code and back.message == e.message
        assert back.details == e.details and back.retry_after == e.retry_after and str(back) == str(e)
        assert ErrorBody.of(back, "r1").model_dump(exclude_none=True) == \
            {"error": {**e.to_dict(), "request_id": "r1"}}
    assert ServiceError("overloaded", "busy", retry_after=2.4).headers() == {"Retry-After": "2"}


@pytest.mark.parametrize("fields, expected", [
    ({"strategy": "segments", "segments": 3}, FrameSampling.segmental(3)),
    ({"strategy": "segments", "segments": 3, "seed": 0, "rule": "tsn"}, FrameSampling.segmental(3, rule="tsn")),
    ({"strategy": "fps", "fps": 2.5}, FrameSampling.at_fps(2.5)),
    ({"strategy": "linspace"}, FrameSampling.linspace()),
    ({"frames": 4}, None),  # no strategy: the rubric's, else the critic's default
])
def test_a_grpc_sampling_carries_only_what_was_set(fields, expected):
    req = grpc_convert.score_request(pb.ScoreRequest(prompt="p", sampling=pb.Sampling(**fields)))
    assert req.sampling == expected


def test_a_grpc_sampling_out_of_bounds_is_invalid_request():
    with pytest.raises(ServiceError) as e:
        grpc_convert.score_request(pb.ScoreRequest(prompt="p", sampling=pb.Sampling(strategy="uniform", frames=0)))
    assert e.value.code == "invalid_request" and e.value.grpc_status == "INVALID_ARGUMENT"
    assert "sampling.frames" in e.value.message


def test_model_info_checks_a_request_against_the_critic():
    info = ModelInfo(name="m", version="1", kind="vlm", default_rubric="lift", default_sampling=FrameSampling(),
                     rubrics=["lift"], adapters=["a"])
    info.check("lift", "vlm", "a", None)
    for args, code in ((("signal", "model-free", None, None), "invalid_rubric"),
                       (("lift", "vlm", "b", None), "unknown_adapter"),
                       (("lift", "vlm", None, "mean"), "invalid_parameter")):
        with pytest.raises(CriticError) as e:
            info.check(*args)
        assert e.value.code == code
    assert ModelInfo.model_validate_json(info.model_dump_json()) == info
