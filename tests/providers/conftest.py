"""Fixtures for the root key provider tests: a fresh SoftHSM2 token per test run, shamir settings.

The SoftHSM2 fixture writes its own ``softhsm2.conf`` with a private token
directory under pytest's temporary directory, points ``SOFTHSM2_CONF`` at it
*before* the PKCS#11 library is first loaded in this process, and initialises
two tokens with ``softhsm2-util --init-token --free``: one the tests log in
to, and one they never log in to with the right PIN (PKCS#11 login state is
per application and per token, so a wrong-PIN test needs a token this
process is not already logged in to).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULE = os.environ.get("HKMS_TEST_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "4711-user"
SO_PIN = "0815-so"


@dataclass
class SoftHsm:
    module: str
    conf: Path
    token_label: str
    other_token_label: str
    pin: str

    def options(self, **overrides: str) -> dict[str, str]:
        options = {
            "module": self.module,
            "token_label": self.token_label,
            "key_label": f"rek-{uuid.uuid4().hex[:8]}",
            "pin": self.pin,
            "pin_file": "",
        }
        options.update(overrides)
        return options

    def env(self, options: dict[str, str]) -> dict[str, str]:
        """Environment for a subprocess using these provider options."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "HKMS_PKCS11_MODULE": options["module"],
            "HKMS_PKCS11_TOKEN_LABEL": options["token_label"],
            "HKMS_PKCS11_KEY_LABEL": options["key_label"],
            "HKMS_PKCS11_PIN": options["pin"],
        }


def _init_token(conf: Path, label: str) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory) -> SoftHsm:
    if not Path(SOFTHSM_MODULE).is_file() or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir(mode=0o700)
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    run = uuid.uuid4().hex[:8]
    hsm = SoftHsm(SOFTHSM_MODULE, conf, f"hkms-test-{run}", f"hkms-other-{run}", USER_PIN)
    _init_token(conf, hsm.token_label)
    _init_token(conf, hsm.other_token_label)
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the library when it is first initialised
    return hsm


@pytest.fixture
def pkcs11_options(settings, softhsm) -> dict[str, str]:
    """The pkcs11 provider configured on the test token, with a key label unique to this test."""
    from keys_app.providers import reset_providers

    options = softhsm.options()
    settings.HKMS_ROOT_KEY_OPTIONS = {**settings.HKMS_ROOT_KEY_OPTIONS, "pkcs11": options}
    reset_providers()
    return options


@pytest.fixture
def shamir_in_process(settings):
    """The shamir provider holding its keys in this process (no seal keeper)."""
    from keys_app.providers import reset_providers

    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "shamir": {"keeper_socket": "", "shares": 5, "threshold": 3},
    }
    reset_providers()
    return settings.HKMS_ROOT_KEY_OPTIONS["shamir"]
