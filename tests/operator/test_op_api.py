"""The InferenceModel spec model: defaults and the rules the API server cannot check."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inference_operator.api import v1alpha1 as api
from inference_operator.reconciler import describe
from inference_policy import model_source


def parse(spec: dict) -> api.InferenceModelSpec:
    return api.InferenceModelSpec.model_validate(spec)


def test_defaults() -> None:
    spec = parse({"model": {"path": "m"}})
    assert (spec.protocol, spec.tensor_parallel_size, spec.gpus, spec.replicas) == (
        "OpenAIServingChat",
        1,
        0,
        1,
    )
    assert spec.served_model_name is None and spec.image is None
    assert spec.monitoring.enabled and spec.monitoring.interval == "30s"
    assert spec.service.port == 8000 and spec.service.type == "ClusterIP"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (
            {"model": {"path": "m"}, "tensorParallelSize": 4, "gpus": 2},
            "gpus (2) must be at least tensorParallelSize (4)",
        ),
        ({"model": {"path": "m"}, "tensorParallelSize": 0}, "spec.tensorParallelSize"),
        ({"model": {"path": "m"}, "replicas": -1}, "spec.replicas"),
        ({"model": {"path": "m"}, "terminationGracePeriodSeconds": 5}, "spec.terminationGracePeriodSeconds"),
        ({"model": {"path": "m"}, "protocol": ""}, "spec.protocol"),
        ({"model": {"path": "../etc"}}, "'..' is not allowed"),
        ({"model": {"path": "/abs"}}, "spec.model.path"),
        ({"model": {"path": "m"}, "engineArgs": {"tensor_parallel_size": 2}}, "not engineArgs"),
        ({"model": {"path": "m"}, "env": [{"name": "MODEL_ROOT", "value": "/x"}]}, "cannot be overridden"),
        ({"model": {"path": "m"}, "resources": {"limits": {"nvidia.com/gpu": 1}}}, "spec.gpus"),
        (
            {
                "model": {
                    "path": "m",
                    "source": {"hostPath": {"path": "/a"}, "persistentVolumeClaim": {"claimName": "c"}},
                }
            },
            "set only one of model.source",
        ),
        (
            {"model": {"source": {"s3": {"uri": "s3://b-1/m"}, "huggingFace": {"repo": "o/n"}}}},
            "(found huggingFace and s3)",
        ),
        ({"model": {"path": "m"}, "unknownField": 1}, "spec.unknownField"),
        ({"model": {}}, "spec.model: model.path is required unless model.source is huggingFace or s3"),
        (
            {"model": {"path": "m", "source": {"huggingFace": {"repo": "o/n"}}}},
            "omit model.path with a huggingFace or s3 source",
        ),
        ({"model": {"path": "m", "cache": {"claimName": "c"}}}, "model.cache applies to huggingFace and s3"),
        (
            {"model": {"source": {"huggingFace": {"repo": "o/../n"}}}},
            "spec.model.source.huggingFace: 'o/../n' is not a Hugging Face repository id",
        ),
        (
            {"model": {"source": {"huggingFace": {"repo": "o/n", "revision": "v1/../../x"}}}},
            "is not a revision",
        ),
        (
            {"model": {"source": {"huggingFace": {"repo": "o/n", "files": ["../*.json"]}}}},
            "is not a relative file pattern",
        ),
        ({"model": {"source": {"s3": {"uri": "s3://Bad_Bucket/m"}}}}, "is not an S3 bucket name"),
        ({"model": {"source": {"s3": {"uri": "gs://bucket/m"}}}}, "spec.model.source.s3.uri"),
        ({"model": {"source": {"s3": {"uri": "s3://bucket/m", "endpoint": "ftp://x"}}}}, "s3.endpoint"),
        (
            {
                "model": {"source": {"s3": {"uri": "s3://bucket/m"}}},
                "env": [{"name": "AWS_ENDPOINT_URL", "value": "http://127.0.0.1:9000"}],
            },
            "AWS_ENDPOINT_URL must come from model.source",
        ),
    ],
)
def test_invalid_specs_explain_themselves(spec: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(spec)
    message = describe(info.value)
    assert fragment in message
    assert "errors.pydantic" not in message  # no pydantic documentation URLs in a status message


def test_remote_sources_parse_into_the_runtimes_source() -> None:
    hub = parse({"model": {"source": {"huggingFace": {"repo": "o/n", "files": ["*.json"]}}}})
    assert hub.model.download_source() == model_source.HubSource("o/n", "main", ("*.json",))
    s3 = parse(
        {
            "model": {
                "source": {
                    "s3": {"uri": "s3://bucket/m", "endpoint": "http://127.0.0.1:9000", "region": "eu-west-1"}
                }
            }
        }
    )
    assert s3.model.download_source() == model_source.S3Source(
        "bucket", "m/", endpoint="http://127.0.0.1:9000", region="eu-west-1"
    )
    assert parse({"model": {"path": "m"}}).model.download_source() is None


def test_gpus_above_tp_and_cpu_tp_are_fine() -> None:
    assert parse({"model": {"path": "m"}, "tensorParallelSize": 2, "gpus": 4}).gpus == 4
    assert parse({"model": {"path": "m"}, "tensorParallelSize": 2}).gpus == 0


def test_engine_args_the_spec_has_fields_for_are_refused() -> None:
    # One list (inference_policy.engine) for both: the runtime refuses the same keys in engine_args.
    with pytest.raises(ValidationError) as info:
        parse({"model": {"path": "m"}, "engineArgs": {"max_model_len": 4096, "dtype": "half"}})
    assert "set dtype, max_model_len through the spec's own fields" in describe(info.value)


@pytest.mark.parametrize("name", ["smollm2", "a", "llama-3-8b"])
def test_good_names(name: str) -> None:
    api.check_name(name)


@pytest.mark.parametrize("name", ["Upper", "9lives", "a" * 64, "dots.not.allowed"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="DNS-1035"):
        api.check_name(name)
