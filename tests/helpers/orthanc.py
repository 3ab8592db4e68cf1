"""A real Orthanc PACS (Debian's package, installed by .ci/run) on free loopback ports,
with its own empty storage, for the PACS bridge's tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.server import free_port

ORTHANC = "/usr/sbin/Orthanc"


class Orthanc:
    def __init__(self, folder: Path):
        binary = shutil.which("Orthanc") or (ORTHANC if os.path.exists(ORTHANC) else None)
        if binary is None:
            if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
                pytest.fail("Orthanc (Debian package orthanc) is not installed")
            pytest.skip("Orthanc (Debian package orthanc) is not installed")
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {
            "Name": "reportgen-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "SyncStorageArea": False,
            "Plugins": [],
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self._log = (folder / "orthanc.log").open("w")
        self.process = subprocess.Popen(
            [binary, str(folder / "orthanc.json")], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start; see {folder / 'orthanc.log'}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def series_of(self, study_uid: str) -> list[dict]:
        """The main tags of every series of one study, by Orthanc's REST API."""
        for study in self.get("/studies?expand"):
            if study["MainDicomTags"]["StudyInstanceUID"] == study_uid:
                return [
                    s["MainDicomTags"] for s in self.get(f"/studies/{study['ID']}/series?expand")
                ]
        return []

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
