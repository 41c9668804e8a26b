"""The CLI's own pieces that need no database (the commands are tested against one elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_data_directorys_credentials_key_file_is_checked(tmp_path: Path) -> None:
    """A review: an empty file started `up` without a word and turned stored connections and signed
    webhooks off; a bad one was blamed on DW_CREDENTIALS_KEY, which was not set; a directory there was a
    traceback. Each is said, naming the file (exit 2); a missing one is made, and read again."""
    from dataworkflows.cli import _local_credentials_key
    from dataworkflows.errors import ConfigurationError

    made = _local_credentials_key(str(tmp_path / "fresh"))
    assert _local_credentials_key(str(tmp_path / "fresh")) == made
    for name, content, says in [
        ("empty", "", "holds no usable key (it must be 32 bytes"),
        ("garbage", "not a key at all!", "holds no usable key"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "credentials.key").write_text(content)
        with pytest.raises(ConfigurationError, match="credentials key file") as refused:
            _local_credentials_key(str(tmp_path / name))
        assert says in str(refused.value) and "DW_CREDENTIALS_KEY" in str(refused.value)
    (tmp_path / "dir" / "credentials.key").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="cannot be made or read"):
        _local_credentials_key(str(tmp_path / "dir"))
