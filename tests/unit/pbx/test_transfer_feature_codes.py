"""The attended-transfer feature codes: deployment settings (``CALLFLOW_ATXFER_*_CODE``),
checked once, rendered into features.conf, the same values the engine types."""

from __future__ import annotations

from pathlib import Path

import pytest

from callflow.errors import PbxConfigError, SettingsError
from callflow.pbx.render import CONF_DIR, PbxConfig, render
from callflow.settings import FeatureCodes, load_feature_codes


def test_defaults_are_asterisks_usual_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ATXFER", "ATXFER_ABORT", "ATXFER_COMPLETE", "ATXFER_THREEWAY",
                 "ATXFER_SWAP"):
        monkeypatch.delenv(f"CALLFLOW_{name}_CODE", raising=False)
    assert load_feature_codes() == FeatureCodes("*7", "*1", "*2", "*3", "*4")


def test_codes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLOW_ATXFER_CODE", "#9")
    monkeypatch.setenv("CALLFLOW_ATXFER_THREEWAY_CODE", " **5 ")
    codes = load_feature_codes()
    assert (codes.atxfer, codes.threeway) == ("#9", "**5")


@pytest.mark.parametrize("variable, value, says", [
    ("CALLFLOW_ATXFER_THREEWAY_CODE", "*3a", "DTMF keys"),       # not a key
    ("CALLFLOW_ATXFER_THREEWAY_CODE", "", "DTMF keys"),          # empty
    ("CALLFLOW_ATXFER_CODE", "*123456789", "DTMF keys"),         # too long
    ("CALLFLOW_ATXFER_CODE", "*1;x", "DTMF keys"),               # breaks the file
    ("CALLFLOW_ATXFER_THREEWAY_CODE", "*2", "must differ"),      # same as complete
    ("CALLFLOW_ATXFER_ABORT_CODE", "*", "prefix"),               # a prefix of every code
])
def test_a_bad_code_is_one_error_naming_its_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=says) as refused:
        load_feature_codes()
    assert variable in str(refused.value)


def test_features_conf_carries_the_configured_codes(tmp_path: Path) -> None:
    codes = FeatureCodes(atxfer="#7", abort="#1", complete="#2", threeway="#3", swap="#4")
    cfg = PbxConfig(ami_port=15038, ami_username="callflow", ami_secret="s3cret-generated",
                    sip_port=15060, rtp_start=16000, rtp_end=16999, agi_host="127.0.0.1",
                    agi_port=15573, feature_codes=codes)
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[cn]\n")
    render(CONF_DIR, tmp_path / "etc", cfg, stock)
    lines = {k.strip(): v.strip() for k, _, v in (
        line.partition("=") for line in (tmp_path / "etc" / "features.conf").read_text()
        .splitlines() if "=" in line and not line.startswith(";"))}
    assert (lines["atxfer"], lines["atxferabort"], lines["atxfercomplete"],
            lines["atxferthreeway"], lines["atxferswap"]) == ("#7", "#1", "#2", "#3", "#4")
    with pytest.raises(PbxConfigError, match="must differ"):
        render(CONF_DIR, tmp_path / "etc2",
               PbxConfig(**{**cfg.__dict__, "feature_codes": FeatureCodes(threeway="*7")}),
               stock)


def test_the_pin_code_may_not_clash_with_a_transfer_code(tmp_path: Path) -> None:
    """Asterisk matches an agent leg's keys against every feature at once: a PIN code
    equal to, or a prefix of, a transfer code would start the wrong feature."""
    cfg = PbxConfig(ami_port=15038, ami_username="callflow", ami_secret="s3cret-generated",
                    sip_port=15060, rtp_start=16000, rtp_end=16999, agi_host="127.0.0.1",
                    agi_port=15573, pin_feature_code="*3")
    with pytest.raises(PbxConfigError, match="PIN feature code"):
        cfg.validate()
    PbxConfig(**{**cfg.__dict__, "pin_feature_code": "*8"}).validate()
