"""System checks for the pkcs11 and shamir provider settings."""

from __future__ import annotations

from hkms_site.checks import check_hierarchy_settings


def ids(settings) -> set[str]:
    return {problem.id for problem in check_hierarchy_settings()}


def test_pkcs11_without_module_or_pin(settings):
    settings.HKMS_ROOT_KEY_PROVIDER = "pkcs11"
    settings.HKMS_ROOT_KEY_OPTIONS = {**settings.HKMS_ROOT_KEY_OPTIONS, "pkcs11": {"module": "", "pin": ""}}
    assert {"hkms.E004", "hkms.E005"} <= ids(settings)


def test_pkcs11_with_a_missing_module_and_an_unreadable_pin_file(settings, tmp_path):
    settings.HKMS_ROOT_KEY_PROVIDER = "pkcs11"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "pkcs11": {"module": str(tmp_path / "nope.so"), "pin": "", "pin_file": str(tmp_path / "pin")},
    }
    problems = check_hierarchy_settings()
    assert {p.id for p in problems} == {"hkms.E004", "hkms.E005"}
    assert any("cannot be read" in p.msg for p in problems)


def test_pkcs11_configured(settings, tmp_path):
    module = tmp_path / "lib.so"
    module.write_bytes(b"")
    pin = tmp_path / "pin"
    pin.write_text("1234")
    settings.HKMS_ROOT_KEY_PROVIDER = "pkcs11"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "pkcs11": {"module": str(module), "pin": "", "pin_file": str(pin)},
    }
    assert ids(settings) == set()


def test_shamir_settings(settings):
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    base = {"keeper_socket": "/run/hkms/k.sock", "shares": 5, "threshold": 3}
    settings.HKMS_ROOT_KEY_OPTIONS = {**settings.HKMS_ROOT_KEY_OPTIONS, "shamir": base}
    assert ids(settings) == set()
    settings.HKMS_ROOT_KEY_OPTIONS["shamir"] = {**base, "keeper_socket": "/" + "x" * 120}
    assert ids(settings) == {"hkms.E006"}
    settings.HKMS_ROOT_KEY_OPTIONS["shamir"] = {**base, "threshold": 6}
    assert ids(settings) == {"hkms.E007"}
    settings.HKMS_PRODUCTION = True
    settings.HKMS_ROOT_KEY_OPTIONS["shamir"] = {**base, "keeper_socket": ""}
    assert ids(settings) == {"hkms.W002"}
