"""Random sequences of what users do to an issue folder, checked against a model (hypothesis).

A state machine writes, appends, renames (as `mv` does: an attachment's EXDEV becomes a
copy and a delete), removes and reads files in one issue folder of a real mount, and now
and then makes the kernel forget its inodes or the daemon forget its listings. A plain
dict of name → bytes says what the folder must show. After every step the folder's names
are the model's; every read returns the model's bytes; at the end of each sequence the
tracker holds exactly the model: one attachment per name, with its bytes, nothing more.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.support.cases import TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.store import sha256_of, stored
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

NAMES = st.sampled_from(["a.txt", "b.txt", "notes.md", "data.bin"])
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def test_random_file_work_leaves_the_folder_and_the_tracker_as_the_model_says(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: the tracker chooses the names of uploads")
    payloads = st.binary(min_size=0 if case.accepts_empty_files else 1, max_size=3000)
    with mount_at(tmp_path / "w", case, clean_emulator) as mount:
        folder = mount.path / case.project / case.plain_issue
        control = mount.path / ".trackerfs" / "control"

        def on_tracker() -> Counter[tuple[str, str]]:
            return Counter((a["filename"], a["sha256"]) for a in stored(clean_emulator, case.plain_issue))

        class FolderMachine(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                # Every sequence starts from an empty folder (and an issue without attachments).
                for name in os.listdir(folder):
                    (folder / name).unlink()
                wait_for(lambda: not on_tracker(), "the issue to hold no attachment")
                self.model: dict[str, bytes] = {}

            def expect_missing(self, action: str, name: str) -> None:
                with pytest.raises(FileNotFoundError):
                    if action == "read":
                        (folder / name).read_bytes()
                    elif action == "unlink":
                        (folder / name).unlink()
                    else:
                        (folder / name).rename(folder / "renamed.txt")

            @rule(name=NAMES, data=payloads)
            def write(self, name: str, data: bytes) -> None:
                (folder / name).write_bytes(data)
                self.model[name] = data

            @rule(name=NAMES, data=payloads)
            def append(self, name: str, data: bytes) -> None:
                with (folder / name).open("ab") as handle:
                    handle.write(data)
                self.model[name] = self.model.get(name, b"") + data

            @rule(source=NAMES, destination=NAMES)
            def rename(self, source: str, destination: str) -> None:
                if source not in self.model:
                    self.expect_missing("rename", source)
                    return
                try:
                    (folder / source).rename(folder / destination)
                except OSError as exc:
                    # An uploaded attachment cannot be renamed: `mv` copies and deletes.
                    assert exc.errno == errno.EXDEV
                    if source != destination:
                        shutil.copyfile(folder / source, folder / destination)
                        (folder / source).unlink()
                self.model[destination] = self.model.pop(source)

            @rule(name=NAMES)
            def unlink(self, name: str) -> None:
                if name not in self.model:
                    self.expect_missing("unlink", name)
                    return
                (folder / name).unlink()
                del self.model[name]

            @rule(name=NAMES)
            def read(self, name: str) -> None:
                if name not in self.model:
                    self.expect_missing("read", name)
                    return
                assert sha256_of((folder / name).read_bytes()) == sha256_of(self.model[name])

            @rule()
            def kernel_forgets(self) -> None:
                os.sync()
                DROP_CACHES.write_text("2")  # dentries and inodes: FORGET for every node

            @rule()
            def daemon_forgets_listings(self) -> None:
                control.write_text("flush metadata\n")

            @invariant()
            def names_are_the_model(self) -> None:
                assert sorted(os.listdir(folder)) == sorted(self.model)

            def teardown(self) -> None:
                wanted = Counter((name, sha256_of(data)) for name, data in self.model.items())
                wait_for(lambda: on_tracker() == wanted, "the tracker to hold what the folder shows")
                assert on_tracker() == wanted

        run_state_machine_as_test(
            FolderMachine,
            settings=settings(
                max_examples=15,
                stateful_step_count=12,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    log = mount.log.read_text()
    assert "Traceback" not in log, log[-3000:]
