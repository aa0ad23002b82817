"""
Field numbers are a wire contract: regenerating the .proto files after an
upgrade of the ``ocpp`` package (simulated with a modified copy of its
schemas: reordered properties and enum values, an added and a removed one)
keeps every number of the committed proto/, reserves the removed ones and
numbers the new ones afresh.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from ocppgw.ocpp.schemas import packaged
from tests.protoc import PROTO, ROOT, protoc


def numbers(proto: Path, out: Path) -> dict[str, int | str]:
    """Every field and enum value number under ``proto``: ``Type.name`` -> number, or 'reserved'."""
    protoc(out, proto, f"--descriptor_set_out={out / 'set.pb'}")
    found: dict[str, int | str] = {}
    files = descriptor_pb2.FileDescriptorSet.FromString((out / "set.pb").read_bytes())
    for f in files.file:
        for m in f.message_type:
            for fd in m.field:
                found[f"{f.package}.{m.name}.{fd.name}"] = fd.number
            for r in m.reserved_range:
                for n in range(r.start, r.end):
                    found[f"{f.package}.{m.name}.#{n}"] = "reserved"
        for e in f.enum_type:
            for v in e.value:
                found[f"{f.package}.{e.name}.{v.name}"] = v.number
            for r in e.reserved_range:
                for n in range(r.start, r.end + 1):  # enum ranges are inclusive
                    found[f"{f.package}.{e.name}.#{n}"] = "reserved"
    return found


def renumbered(old: dict[str, int | str], new: dict[str, int | str]) -> list[str]:
    """What ``new`` numbers differently from ``old``, or gives a number ``old`` used to another."""
    wrong = []
    for key, number in old.items():
        if key.rsplit(".", 1)[1].startswith("#"):
            continue
        kept = new.get(key) == number
        type_name = key.rsplit(".", 1)[0]
        reserved = new.get(f"{type_name}.#{number}") == "reserved" and key not in new
        if not (kept or reserved):
            wrong.append(f"{key}: {number} -> {new.get(key, 'gone, not reserved')}")
    by_number = {(k.rsplit(".", 1)[0], v): k for k, v in old.items() if isinstance(v, int)}
    for key, number in new.items():
        other = by_number.get((key.rsplit(".", 1)[0], number))
        if isinstance(number, int) and other is not None and other != key:
            wrong.append(f"{key}: {number} was {other}")
    return wrong


def upgraded_schemas(tmp: Path) -> Path:
    """A copy of the packaged schemas as a newer ``ocpp`` package might ship them."""
    for version, d in (("ocpp1.6", "v16"), ("ocpp2.0.1", "v201"), ("ocpp2.1", "v21")):
        (tmp / d).mkdir(parents=True)
        for name in packaged().files(version):
            (tmp / d / name).write_text(json.dumps(packaged().load(version, name)))
    boot = json.loads((tmp / "v16/BootNotification.json").read_text())
    props = boot["properties"]
    del props["iccid"]
    props["chargePointNickname"] = {"type": "string", "maxLength": 20}
    boot["properties"] = dict(reversed(props.items()))
    (tmp / "v16/BootNotification.json").write_text(json.dumps(boot))
    status = json.loads((tmp / "v16/StatusNotification.json").read_text())
    values = status["properties"]["status"]["enum"]
    values.remove("Reserved")
    status["properties"]["status"]["enum"] = ["Paused", *reversed(values)]
    (tmp / "v16/StatusNotification.json").write_text(json.dumps(status))
    return tmp


def regenerate(tmp: Path, schemas: Path, *extra: str) -> Path:
    cmd = [sys.executable, str(ROOT / "tools/genproto.py"), "--schema-dir", str(schemas)]
    cmd += ["--proto-dir", str(tmp / "proto"), "--python-dir", str(tmp / "py"), *extra]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return tmp / "proto"


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int | str]:
    return numbers(PROTO, tmp_path_factory.mktemp("committed"))


def test_upgrade_of_ocpp_keeps_every_number(
    tmp_path: Path, committed: dict[str, int | str]
) -> None:
    """After reordering, adding and removing, every committed number stays or is reserved."""
    proto = regenerate(tmp_path, upgraded_schemas(tmp_path / "schemas"))
    new = numbers(proto, tmp_path / "new")
    assert renumbered(committed, new) == []
    boot = "ocppgw_pb.v1.v16.BootNotificationRequest"
    assert f"{boot}.iccid" not in new and new[f"{boot}.#6"] == "reserved"
    assert new[f"{boot}.chargePointNickname"] == 10  # after every number it ever used
    status = "ocppgw_pb.v1.v16.StatusNotificationRequestStatusEnum"
    reserved = committed[f"{status}.STATUS_NOTIFICATION_REQUEST_STATUS_RESERVED"]
    assert new[f"{status}.#{reserved}"] == "reserved"
    lock = json.loads((proto / "ocppgw_pb/v1/numbers.json").read_text())
    assert lock["v16"]["messages"]["BootNotificationRequest"]["removed"] == {"iccid": 6}
    text = (proto / "ocppgw_pb/v1/v16.proto").read_text()
    assert 'reserved 6;\n  reserved "iccid";' in text


def test_without_the_lock_the_upgrade_would_renumber(
    tmp_path: Path, committed: dict[str, int | str]
) -> None:
    """Without the lock, the same upgrade moves numbers, and the check sees it."""
    proto = regenerate(
        tmp_path, upgraded_schemas(tmp_path / "schemas"), "--lock", str(tmp_path / "none.json")
    )
    wrong = renumbered(committed, numbers(proto, tmp_path / "new"))
    assert any("BootNotificationRequest.chargePointVendor" in w for w in wrong), wrong
