"""Read a rotating JSONL log from where the last read stopped, across rotations and restarts.

The inference service rotates by renaming: `<path>` -> `<path>.1` -> `<path>.2` ...; a renamed
file keeps its inode. The reader remembers the inode, the byte offset and the first bytes of the
file it was reading; after a rotation it finishes that file under its new name, reads any newer
backups, then the new `<path>`. Only complete lines are consumed from the live file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEAD_BYTES = 64
MAX_BACKUPS = 1000


@dataclass
class Position:
    """Where reading stopped: a file's identity and the byte offset after the last full line."""

    device: int
    inode: int
    offset: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(int(data["device"]), int(data["inode"]), int(data["offset"]), str(data["head"]))


class RotatingLogReader:
    """Incremental reader of `<path>` and its numbered backups."""

    def __init__(self, path: str | os.PathLike[str], position: Position | None = None) -> None:
        self.path = Path(path)
        self.position = position
        self.lost = 0

    def chain(self) -> list[Path]:
        """Existing files, oldest first: `<path>.N` ... `<path>.1`, `<path>`."""
        backups = []
        for n in range(1, MAX_BACKUPS + 1):
            candidate = self.path.with_name(f"{self.path.name}.{n}")
            if not candidate.exists():
                break
            backups.append(candidate)
        files = list(reversed(backups))
        if self.path.exists():
            files.append(self.path)
        return files

    def read_new(self) -> list[str]:
        """Return the complete lines written since the last call (or since the beginning)."""
        files = self.chain()
        start, offset = 0, 0
        if self.position is not None:
            found = self._locate(files)
            if found is None:
                self.lost += 1
                log.warning("lost track of %s after rotation; reading all its files", self.path)
            else:
                start, offset = found
        expect = self.position
        lines: list[str] = []
        for index in range(start, len(files)):
            live = index == len(files) - 1 and files[index] == self.path
            first = index == start and expect is not None
            lines += self._read(
                files[index], offset if first else 0, live, expect if first else None
            )
        return lines

    def _locate(self, files: list[Path]) -> tuple[int, int] | None:
        assert self.position is not None
        for index in range(len(files) - 1, -1, -1):
            try:
                st = files[index].stat()
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) != (self.position.device, self.position.inode):
                continue
            if _head(files[index], len(bytes.fromhex(self.position.head))) != self.position.head:
                return None
            offset = self.position.offset
            if st.st_size < offset:
                log.warning("%s shrank below the read offset; reading it again", files[index])
                offset = 0
            return index, offset
        return None

    def _read(self, path: Path, offset: int, live: bool, expect: Position | None) -> list[str]:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return []
        with handle:
            st = os.fstat(handle.fileno())
            if expect is not None and (st.st_dev, st.st_ino) != (expect.device, expect.inode):
                offset = 0  # rotated between listing and opening: this is a new file
            handle.seek(offset)
            data = handle.read()
            end = len(data)
            if live:
                end = data.rfind(b"\n") + 1
            consumed = offset + end
            handle.seek(0)
            head = handle.read(min(HEAD_BYTES, consumed)).hex()
        self.position = Position(st.st_dev, st.st_ino, consumed, head)
        text = data[:end].decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]


def _head(path: Path, size: int) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(size).hex()
    except FileNotFoundError:
        return ""
