"""What the workshop tests share: the aws CLI's answer or its modeled error, and the workshop's JSON
files (tests/clients/workshop) with their %PLACEHOLDERS% filled in."""

from __future__ import annotations

from pathlib import Path

WORKSHOP = Path(__file__).parent / "workshop"


def fill(template: str, out: Path, **values) -> str:
    text = (WORKSHOP / template).read_text()
    for k, v in values.items():
        text = text.replace(f"%{k}%", str(v))
    out.write_text(text)
    return f"file://{out}"


def ok(res):
    assert res.ok, f"aws {' '.join(res.args)} failed: {res.error}"
    return res.data


def err(res, code: str) -> str:
    assert not res.ok, f"aws {' '.join(res.args)} succeeded: {res.stdout}"
    assert f"({code})" in res.error, res.error
    return res.error
