"""`retailctl prices import` cuts the file into messages at line ends, reading blocks (pure): the
messages rebuild the file, and the data-line counts (progress) match a line-by-line count."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from retailctl.commands import prices


def _line_by_line(data: bytes) -> int:
    """The count before the block reader: non-blank lines after the header."""
    return sum(number > 0 and bool(line.strip()) for number, line in enumerate(io.BytesIO(data)))


def _files() -> list[bytes]:
    rng = random.Random(7)
    pieces = [b"base,A,1.00,EUR,2030-01-01T00:00:00Z", b"", b"  ", b"x" * 70, b"\r", b"a\rb", b"\x0c"]
    files = [b"", b"h", b"h\n", b"h\na\nb", b"\na\n", b"  \na\n", b"h\r\na\r\n\r\nb\r\n"]
    files += [b"h\n" + b"x" * 300 + b"\ny\n"]  # a line longer than a block
    for _ in range(500):
        lines = [rng.choice(pieces) for _ in range(rng.randrange(0, 15))]
        files.append(b"\n".join(lines) + rng.choice([b"", b"\n"]))
    return files


@pytest.mark.parametrize("block", [8, 64, 4096])
def test_chunks_are_whole_lines_that_rebuild_the_file_and_count_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(prices, "CHUNK_BYTES", block)
    path = tmp_path / "prices.csv"
    for data in _files():
        path.write_bytes(data)
        chunks = list(prices._chunks(path))
        assert b"".join(chunk for chunk, _ in chunks) == data
        assert all(chunk.endswith(b"\n") for chunk, _ in chunks[:-1])
        assert sum(lines for _, lines in chunks) == _line_by_line(data) == prices._data_lines(path)
