"""The config keys code names (infra/settings/keys.py), each derived from its declaration."""

from __future__ import annotations

import pytest

from infra.settings import declarations, keys


def test_every_named_key_is_a_declared_setting() -> None:
    declared = {d.key for d in declarations()}
    named = [v for v in vars(keys).values() if isinstance(v, keys.ConfigKey)]
    assert len(named) >= 8 and {k.name for k in named} <= declared
    assert keys.IMAGE_TAG.name == "imageTag" and keys.IMAGE_TAG.full == "rolling:imageTag"


def test_a_key_no_setting_declares_fails_where_it_is_named() -> None:
    with pytest.raises(KeyError, match="'image_tga'"):
        keys.config_key("image_tga")


def test_strip_keeps_the_programs_keys_without_their_namespace() -> None:
    assert keys.strip({"rolling:imageTag": "1", "aws:region": "eu-west-1"}) == {"imageTag": "1"}
