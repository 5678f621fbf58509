"""``socpipe rules validate``: every problem of every file in one run, and unmapped fields."""

from __future__ import annotations

import re
from pathlib import Path

from detectors.sigma.validate import validate

GOOD = """title: Good rule
id: 9b0a6f1e-5d1c-4f8e-b8a6-000000000001
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\whoami.exe'
    condition: selection
"""
MALFORMED = """title: Malformed
logsource:
    product: windows
  category: process_creation
detection:
    selection:
        Image: x
    condition: selection
"""
UNKNOWN_MODIFIER = """title: Unknown modifier
id: 9b0a6f1e-5d1c-4f8e-b8a6-000000000002
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image: x
        CommandLine|containz: whoami
    condition: selection
"""
MISSING_SELECTION = """title: Missing selection
id: 9b0a6f1e-5d1c-4f8e-b8a6-000000000003
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image: x
    condition: selection and not filter
"""
DUPLICATE_KEYS = """title: Duplicate keys
id: 9b0a6f1e-5d1c-4f8e-b8a6-000000000004
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image: x
    selection:
        Image: y
    condition: selection
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_problem_of_every_file_in_one_run(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.yml", GOOD)
    malformed = _write(tmp_path, "malformed.yml", MALFORMED)
    modifier = _write(tmp_path, "modifier.yml", UNKNOWN_MODIFIER)
    missing = _write(tmp_path, "missing.yml", MISSING_SELECTION)
    duplicate = _write(tmp_path, "duplicate.yml", DUPLICATE_KEYS)
    report = validate([tmp_path])
    assert report.exit_code != 0
    assert report.rules == 1  # the good rule still loads
    where = {(problem.path, problem.line) for problem in report.errors}
    assert where == {
        (malformed, 4),  # the misindented key
        (modifier, 9),  # the key with |containz
        (missing, 9),  # the condition
        (duplicate, 9),  # the second "selection"
    }
    lines = report.format_report()
    for path, line in where:
        assert any(text.startswith(f"{path}:{line}: error: ") for text in lines), (path, lines)
    assert not any(text.startswith(str(good)) for text in lines)
    assert any("containz" in text for text in lines)
    assert any("'filter'" in text for text in lines)
    assert any("duplicate key 'detection.selection'" in text for text in lines)
    assert lines[-1].startswith("5 files: 1 rules loaded")


def test_a_clean_set_exits_zero(tmp_path: Path) -> None:
    _write(tmp_path, "good.yml", GOOD)
    report = validate([tmp_path])
    assert report.exit_code == 0
    assert report.format_report() == [
        "1 files: 1 rules loaded, 0 correlations, 0 of unsupported log sources; "
        "0 errors, 0 warnings"
    ]


def test_unmapped_fields_are_warnings_with_their_line(tmp_path: Path) -> None:
    linux = _write(
        tmp_path,
        "linux.yml",
        """title: Linux logon id
logsource: {product: linux, category: process_creation}
detection:
    selection:
        Image|endswith: /bash
        LogonId: 0
    condition: selection
""",
    )
    windows = _write(
        tmp_path,
        "windows.yml",
        """title: Windows level
logsource: {product: windows, service: application}
detection:
    selection:
        Provider_Name: x
        Level: 4
        SomeEventDataField: y
    condition: selection
""",
    )
    web = _write(
        tmp_path,
        "web.yml",
        """title: Web cookie
logsource: {category: webserver}
detection:
    selection:
        cs-cookie|contains: x
        cs-uri-query|contains: y
    condition: selection
""",
    )
    report = validate([tmp_path])
    assert report.exit_code == 0
    unmapped = {(item.path, item.line, item.field) for item in report.unmapped}
    # A Windows event data name is mapped by definition (winlog.event_data.<Name>): only the
    # System fields socpipe keeps in another form are not.
    assert unmapped == {(linux, 6, "LogonId"), (windows, 6, "Level"), (web, 5, "cs-cookie")}
    lines = report.format_report()
    assert f"{linux}:6: warning: field LogonId is not mapped [Linux logon id]" in lines


def test_fields_named_by_their_ecs_path_are_mapped_but_a_misspelled_set_is_not(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        "sshd.yml",
        """title: Root from outside
logsource: {product: linux, service: sshd}
detection:
    selection:
        event.outcome: success
        socpipe.address_scope.source: public
        evnt.action: ssh_login
    condition: selection
""",
    )
    report = validate([tmp_path])
    assert [(item.path, item.line, item.field) for item in report.unmapped] == [
        (path, 7, "evnt.action")
    ]


def test_unsupported_log_sources_are_warnings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "aws.yml",
        "title: Cloud\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection: {selection: {eventName: X}, condition: selection}\n",
    )
    report = validate([path])
    assert report.exit_code == 0
    (line,) = [text for text in report.format_report() if ": warning: " in text]
    assert re.match(rf"{re.escape(str(path))}:2: warning: no socpipe events for log source", line)
    assert report.unsupported == 1
