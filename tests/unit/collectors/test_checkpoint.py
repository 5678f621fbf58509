"""CheckpointStore: round trip, atomic save, and clear errors for a bad checkpoint file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors.checkpoint import Checkpoint, CheckpointStore
from socpipe.errors import ConfigError


def test_missing_file_means_no_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints.json")

    assert store.get(Path("/var/log/auth.log")) is None
    assert not (tmp_path / "checkpoints.json").exists()


def test_saved_checkpoints_are_read_back(tmp_path: Path) -> None:
    file = tmp_path / "checkpoints.json"
    store = CheckpointStore(file)
    store.set(Path("/var/log/auth.log"), Checkpoint(device=2049, inode=131, offset=5120))
    store.set(Path("/var/log/nhật-ký.log"), Checkpoint(device=2049, inode=7, offset=0))
    store.save()

    again = CheckpointStore(file)

    assert again.get(Path("/var/log/auth.log")) == Checkpoint(2049, 131, 5120)
    assert again.get(Path("/var/log/nhật-ký.log")) == Checkpoint(2049, 7, 0)
    assert json.loads(file.read_text(encoding="utf-8")) == {
        "/var/log/auth.log": {"device": 2049, "inode": 131, "offset": 5120, "generation": 0},
        "/var/log/nhật-ký.log": {"device": 2049, "inode": 7, "offset": 0, "generation": 0},
    }


def test_set_replaces_and_is_not_saved_until_save(tmp_path: Path) -> None:
    file = tmp_path / "checkpoints.json"
    store = CheckpointStore(file)
    store.set(Path("a.log"), Checkpoint(1, 2, 3))
    store.save()

    store.set(Path("a.log"), Checkpoint(1, 2, 99))

    assert store.get(Path("a.log")) == Checkpoint(1, 2, 99)
    assert CheckpointStore(file).get(Path("a.log")) == Checkpoint(1, 2, 3)
    store.save()
    assert CheckpointStore(file).get(Path("a.log")) == Checkpoint(1, 2, 99)


def test_save_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints.json")
    store.set(Path("a.log"), Checkpoint(1, 2, 3))

    store.save()
    store.save()

    assert [entry.name for entry in tmp_path.iterdir()] == ["checkpoints.json"]


def test_corrupt_json_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    file = tmp_path / "checkpoints.json"
    file.write_bytes(b'{"/var/log/auth.log": {"device": 1, "ino')

    with pytest.raises(ConfigError) as caught:
        CheckpointStore(file)

    message = str(caught.value)
    assert str(file) in message
    assert "not valid JSON" in message
    assert "move it aside" in message


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    file = tmp_path / "checkpoints.json"
    file.write_bytes(b"")

    with pytest.raises(ConfigError, match="not valid JSON"):
        CheckpointStore(file)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    file = tmp_path / "checkpoints.json"
    file.write_text("[1, 2, 3]", encoding="utf-8")

    with pytest.raises(ConfigError, match="top level must be an object") as caught:
        CheckpointStore(file)
    assert str(file) in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"device": 1, "inode": 2}, "expected the keys device, inode, offset"),
        ({"device": 1, "inode": 2, "offset": 3, "extra": 4}, "expected the keys"),
        ({"device": 1, "inode": 2, "offset": -1}, "offset must be a whole number >= 0"),
        ({"device": 1, "inode": 2, "offset": "10"}, "offset must be a whole number >= 0"),
        ({"device": True, "inode": 2, "offset": 3}, "device must be a whole number >= 0"),
        ({"device": 1, "inode": 2.5, "offset": 3}, "inode must be a whole number >= 0"),
        ([1, 2, 3], "expected an object"),
    ],
)
def test_bad_entry_names_the_file_and_the_source(
    tmp_path: Path, entry: object, problem: str
) -> None:
    file = tmp_path / "checkpoints.json"
    file.write_text(json.dumps({"/var/log/auth.log": entry}), encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        CheckpointStore(file)

    message = str(caught.value)
    assert str(file) in message
    assert "'/var/log/auth.log'" in message
    assert problem in message
    assert "move it aside" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    # A directory where the file should be: unreadable even for root, unlike a chmod.
    file = tmp_path / "checkpoints.json"
    file.mkdir()

    with pytest.raises(ConfigError, match="cannot read checkpoint file") as caught:
        CheckpointStore(file)
    assert str(file) in str(caught.value)


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "no-such-dir" / "checkpoints.json"

    with pytest.raises(ConfigError, match="does not exist") as caught:
        CheckpointStore(file)
    assert str(file) in str(caught.value)


def test_checkpoint_dict_round_trip() -> None:
    checkpoint = Checkpoint(device=64769, inode=1_048_577, offset=12_345_678_901)

    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint
