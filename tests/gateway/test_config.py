from __future__ import annotations

import pytest

from findface_grpc import config
from findface_grpc.errors import ConfigError
from findface_grpc.gateway.config import GatewayConfig


def test_file_environment_and_overrides_layer(tmp_path):
    path = tmp_path / "ff.toml"
    path.write_text('[gateway]\nshards = ["10.0.0.1:5001", "10.0.0.2:5001"]\ncells = 16\n'
                    'cell_map = ["0-9:0", "10-15:1"]\n')
    env = {"FINDFACE_GATEWAY_PARTIAL_RESULTS": "unavailable", "FINDFACE_GATEWAY_MAX_N": "50"}
    cfg = config.load(GatewayConfig, "gateway", path, environ=env, overrides={"listen": "0.0.0.0:7000"})
    assert cfg.shards == ("10.0.0.1:5001", "10.0.0.2:5001")
    assert cfg.cells == 16 and cfg.cell_map == ("0-9:0", "10-15:1")
    assert cfg.partial_results == "unavailable" and cfg.max_n == 50
    assert cfg.listen == "0.0.0.0:7000"
    assert cfg.mongo_uri.startswith("mongodb://127.0.0.1:27017")


def test_comma_separated_shards_from_the_command_line():
    cfg = config.load(GatewayConfig, "gateway", None, environ={}, overrides={"shards": "a:1, b:2"})
    assert cfg.shards == ("a:1", "b:2")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "at least one shard"),
        ({"shards": "a:1,a:1"}, "twice"),
        ({"shards": "nohostport"}, "not host:port"),
        ({"shards": "a:1", "partial_results": "maybe"}, "partial_results"),
        ({"shards": "a:1,b:1,c:1", "cells": 2}, "at least the number of shards"),
        ({"shards": "a:1", "cells": 4, "cell_map": "0-2:0"}, "unmapped"),
        ({"shards": "a:1", "max_n": 0}, "max_n"),
        ({"shards": "a:1", "shard_deadline_s": 0}, "shard_deadline_s"),
        ({"shards": "a:1", "shard_hang_s": 0}, "shard_hang_s"),
        ({"shards": "a:1", "default_threshold": "loose"}, "default_threshold"),
        ({"shards": "a:1", "listen": "7000"}, "listen"),
        ({"shards": "a:0"}, "not host:port"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(GatewayConfig, "gateway", None, environ={}, overrides=overrides)


def test_listening_on_port_0_lets_the_system_pick():
    cfg = config.load(GatewayConfig, "gateway", None, environ={}, overrides={"shards": "a:1", "listen": "127.0.0.1:0"})
    assert cfg.listen == "127.0.0.1:0"
