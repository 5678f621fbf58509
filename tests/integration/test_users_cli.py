"""``socpipe users add|passwd|list`` against the real Elasticsearch, and signing in with what
they made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api.users import ElasticsearchUserStore
from socpipe.elastic import make_elasticsearch
from socpipe.settings import Role, Settings
from tests.support.cli import run_socpipe

pytestmark = pytest.mark.elasticsearch


def test_users_are_added_listed_and_given_a_new_password(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    values: dict[str, Any] = pipeline_settings.model_dump(mode="json")
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("mật khẩu đầu tiên 2026\n", encoding="utf-8")
    second.write_text("một mật khẩu mới hơn\n", encoding="utf-8")

    added = run_socpipe(
        config, "users", "add", "admin", "--role", "soc_admin", "--password-file", str(first)
    )
    assert added.returncode == 0, added.stderr
    viewer = run_socpipe(
        config, "users", "add", "px.viewer", "--role", "agency_viewer",
        "--agency", "phuong-phuc-xa", "--password-file", str(first),
    )  # fmt: skip
    assert viewer.returncode == 0, viewer.stderr
    again = run_socpipe(
        config, "users", "add", "admin", "--role", "analyst", "--password-file", str(first)
    )
    assert again.returncode == 2 and "exists" in again.stderr
    wrong = run_socpipe(
        config, "users", "add", "bob", "--role", "root", "--password-file", str(first)
    )
    assert wrong.returncode == 2 and "soc_admin" in wrong.stderr

    listed = run_socpipe(config, "users", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        "admin\tsoc_admin\t-",
        "px.viewer\tagency_viewer\tphuong-phuc-xa",
    ]
    assert "argon2" not in listed.stdout and "mật khẩu" not in listed.stdout + listed.stderr

    changed = run_socpipe(config, "users", "passwd", "admin", "--password-file", str(second))
    assert changed.returncode == 0, changed.stderr
    store = ElasticsearchUserStore(
        make_elasticsearch(pipeline_settings.elasticsearch),
        pipeline_settings.elasticsearch.index_prefix,
    )
    assert store.verify("admin", "mật khẩu đầu tiên 2026") is None
    user = store.verify("admin", "một mật khẩu mới hơn")
    assert user is not None and user.role is Role.SOC_ADMIN
