import pytest

from findface_grpc import config
from findface_grpc.errors import ConfigError
from findface_grpc.extractor.config import ExtractorConfig


def test_defaults_file_and_environment_layer_in_order(tmp_path):
    path = tmp_path / "ff.toml"
    path.write_text('[extractor]\nlisten = "0.0.0.0:1"\nmax_batch = 8\nproviders = ["CPUExecutionProvider"]\n')
    env = {"FINDFACE_EXTRACTOR_MAX_BATCH": "4", "FINDFACE_EXTRACTOR_MODEL_PACK": "yunet-sface"}
    cfg = config.load(ExtractorConfig, "extractor", path, environ=env)
    assert cfg.listen == "0.0.0.0:1"
    assert cfg.max_batch == 4
    assert cfg.model_pack == "yunet-sface"
    assert cfg.providers == ("CPUExecutionProvider",)
    assert cfg.min_face_size == 20


@pytest.mark.parametrize(
    "text, env, message",
    [
        ('[extractor]\nmax_bach = 3\n', {}, "unknown keys ['max_bach']"),
        ('[extractor]\nmax_batch = "many"\n', {}, "expected int"),
        ("", {"FINDFACE_EXTRACTOR_NOPE": "1"}, "has no setting 'nope'"),
        ("", {"FINDFACE_EXTRACTOR_MAX_BATCH": "0"}, "max_batch must be >= 1"),
        ('[extractor]\nmodel_pack = "custom"\n', {}, "needs custom_detector"),
        ("[extractor\n", {}, "ff.toml"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(tmp_path, text, env, message):
    path = tmp_path / "ff.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(ExtractorConfig, "extractor", path, environ=env)


def test_missing_file_is_an_error():
    with pytest.raises(ConfigError, match="not found"):
        config.load(ExtractorConfig, "extractor", "/nonexistent/ff.toml", environ={})


def test_the_launchers_config_refuses_a_tarantool_arena_tarantool_refuses(tmp_path):
    """It used to start SecantusDB and the license server and make tokens, then stop at Tarantool's Lua error."""
    from findface_grpc.cluster import ClusterConfig

    path = tmp_path / "cluster.toml"
    path.write_text("[cluster]\ntarantool_memtx_mb = 32\n")
    with pytest.raises(ConfigError, match=r"\[cluster\]\.tarantool_memtx_mb must be at least 64"):
        config.load(ClusterConfig, "cluster", path, environ={})
    path.write_text("[cluster]\ntarantool_memtx_mb = 64\n")
    assert config.load(ClusterConfig, "cluster", path, environ={}).tarantool_memtx_mb == 64
