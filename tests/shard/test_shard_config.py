"""ShardConfig: defaults, overrides and what validation refuses."""
from __future__ import annotations

import pytest

from findface_grpc import config
from findface_grpc.errors import ConfigError
from findface_grpc.shard.config import ShardConfig


def test_defaults_and_overrides():
    cfg = config.load(ShardConfig, "shard", environ={"FINDFACE_SHARD_SEARCH_BATCH_MAX": "8"},
                      overrides={"tarantool": "10.0.0.5:3302", "shard_id": "shard-7"})
    assert (cfg.search_batch_max, cfg.shard_id, cfg.tarantool_address) == (8, "shard-7", ("10.0.0.5", 3302))
    assert (cfg.model_id, cfg.dim) == ("", 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tarantool": "localhost"}, "[shard].tarantool must be host:port"),
        ({"listen": "127.0.0.1:99999"}, "[shard].listen must be host:port"),
        ({"model_id": "w600k_mbf"}, "model_id and dim are set together"),
        ({"dim": 512}, "model_id and dim are set together"),
        ({"search_batch_max": 0}, "search_batch_max must be >= 1"),
        ({"shard_id": ""}, "shard_id must not be empty"),
        ({"tarantool_timeout_s": 0}, "timeouts must be > 0"),
    ],
)
def test_invalid_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError) as info:
        config.load(ShardConfig, "shard", environ={}, overrides=overrides)
    assert message in info.value.message
