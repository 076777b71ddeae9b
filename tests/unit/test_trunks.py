"""Carrier trunks as configuration (callflow/trunks.py) and their rendering (issue 16)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from callflow.engine.policy import Policy
from callflow.errors import SettingsError
from callflow.pbx.render import CONF_DIR, PbxConfig, outbound_target, render
from callflow.settings import load_settings
from callflow.trunks import load_trunks, trunk_statuses, with_trunk_dids


def secret(tmp_path: Path, mode: int = 0o600, text: str = "s3cret-pass") -> Path:
    path = tmp_path / "carrier.secret"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def trunks_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "trunks.toml"
    path.write_text(body)
    return path


def example(tmp_path: Path) -> str:
    return f'''
[trunks.carrier]
host = "sip.carrier.example"
port = 5080
auth = "register"
username = "4008001234"
secret_file = "{secret(tmp_path)}"
codecs = ["alaw"]
country = "cn"
number_format = "national"
outbound = true
presented_number = "4008001234"
presented_numbers = {{ follow_up = "4008001235" }}
dids = {{ "4008001234" = "main", "4008001299" = "vip" }}

[trunks.backup]
host = "203.0.113.10"
auth = "ip"
match = ["203.0.113.0/24"]
dids = {{ "4008005555" = "main" }}
'''


def test_a_complete_file_is_read_into_trunks(tmp_path: Path) -> None:
    carrier, backup = load_trunks(trunks_file(tmp_path, example(tmp_path)))
    assert (carrier.name, carrier.port, carrier.auth, carrier.password) == (
        "carrier", 5080, "register", "s3cret-pass")
    assert "s3cret" not in repr(carrier)  # never in a log line
    assert carrier.route().dialled("+8613900000001") == "13900000001"
    assert carrier.route().presented_numbers == {"follow_up": "4008001235"}
    assert (backup.auth, backup.matches, backup.password) == ("ip", ("203.0.113.0/24",), "")
    assert load_trunks(None) == ()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('port = 5080', 'port = 70000'), r"\[trunks.carrier\]: port must be"),
    (lambda t: t.replace('auth = "register"', 'auth = "magic"'), "auth must be one of"),
    (lambda t: t.replace('codecs = ["alaw"]', 'codecs = ["mp3"]'), "codecs must be"),
    (lambda t: t.replace('country = "cn"', 'country = "zz"'), "country must be one of"),
    (lambda t: t.replace('"4008001299" = "vip"', '"40a" = "vip"'), "is not a DID"),
    (lambda t: t.replace('follow_up =', 'sales ='), "is not a task kind"),
    (lambda t: t.replace('presented_number = "4008001234"', 'presented_number = "+86"'),
     "presented_number must be 2-32 digits"),
    (lambda t: t + 'password = "x"\n', "password is not a trunk key"),
    (lambda t: t.replace('"4008005555"', '"4008001234"'), "DID 4008001234 is on both"),
    (lambda t: t.replace('auth = "ip"', 'auth = "ip"\noutbound = true'),
     "only one trunk may carry outbound"),
    (lambda t: t.replace('match = ["203.0.113.0/24"]', 'match = ["nowhere"]'),
     "is not an address"),
    (lambda t: t + "[oops]\n", r"unknown table \[oops\]"),
    (lambda t: t.replace("[trunks.backup]", "[trunks.Backup]"), "a trunk name is"),
    (lambda t: t.replace("[trunks.backup]", "[trunks.backup"), "not valid TOML"),
])
def test_each_bad_value_is_one_line_naming_the_trunk_and_key(tmp_path: Path, edit: object,
                                                             message: str) -> None:
    text = edit(example(tmp_path))  # type: ignore[operator]
    with pytest.raises(SettingsError, match=message) as err:
        load_trunks(trunks_file(tmp_path, text))
    assert "\n" not in str(err.value)


def test_the_password_file_must_exist_and_be_the_owners_alone(tmp_path: Path) -> None:
    text = example(tmp_path)
    secret(tmp_path, mode=0o644)
    with pytest.raises(SettingsError, match="mode 0644: it must be readable by its owner only"):
        load_trunks(trunks_file(tmp_path, text))
    (tmp_path / "carrier.secret").unlink()
    with pytest.raises(SettingsError, match=r"secret_file .*No such file"):
        load_trunks(trunks_file(tmp_path, text))
    no_file = text.replace(f'secret_file = "{tmp_path / "carrier.secret"}"\n', "")
    with pytest.raises(SettingsError, match="secret_file must name the file"):
        load_trunks(trunks_file(tmp_path, no_file))


def test_trunk_dids_join_the_policy_routing_and_a_conflict_is_refused(tmp_path: Path) -> None:
    trunks = load_trunks(trunks_file(tmp_path, example(tmp_path)))
    policy = with_trunk_dids(Policy.defaults(), trunks)
    assert policy.routing.did_queues["4008001299"] == "vip"
    other = Policy.model_validate({"routing": {"did_queues": {"4008001299": "main"}}})
    with pytest.raises(SettingsError, match="DID 4008001299 goes to queue 'vip'"):
        with_trunk_dids(other, trunks)


def test_settings_read_the_trunks_file_and_the_rtp_range(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CALLFLOW_PORT_BASE", "40000")
    monkeypatch.setenv("CALLFLOW_TRUNKS_FILE", str(trunks_file(tmp_path, example(tmp_path))))
    settings = load_settings()
    assert [t.name for t in settings.trunks] == ["carrier", "backup"]
    assert (settings.ports.rtp_start, settings.ports.rtp_end) == (42000, 42999)
    monkeypatch.setenv("CALLFLOW_RTP_START", "41000")
    monkeypatch.setenv("CALLFLOW_RTP_END", "41099")
    assert load_settings().ports.rtp_start == 41000
    monkeypatch.setenv("CALLFLOW_RTP_END", "40999")
    with pytest.raises(SettingsError, match=r"CALLFLOW_RTP_END .* must be above"):
        load_settings()
    monkeypatch.setenv("CALLFLOW_RTP_START", "40000")
    monkeypatch.setenv("CALLFLOW_RTP_END", "40100")
    with pytest.raises(SettingsError, match="holds the AMI port 40038"):
        load_settings()


def _render(tmp_path: Path, **values: object) -> dict[str, str]:
    stock = tmp_path / "stock"
    stock.mkdir(exist_ok=True)
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[cn]\n")
    cfg = PbxConfig(ami_port=5038, ami_username="callflow", ami_secret="an-ami-s3cret",
                    sip_port=5060, rtp_start=10000, rtp_end=10999, agi_host="127.0.0.1",
                    agi_port=4573, **values)  # type: ignore[arg-type]
    out = tmp_path / "etc"
    render(CONF_DIR, out, cfg, stock)
    assert oct((out / "pjsip.conf").stat().st_mode & 0o777) == "0o600"
    return {p.name: p.read_text() for p in out.iterdir()}


def test_trunks_are_rendered_into_pjsip_and_the_dialplan(tmp_path: Path) -> None:
    trunks = load_trunks(trunks_file(tmp_path, example(tmp_path)))
    conf = _render(tmp_path, trunks=trunks)
    pjsip, dialplan = conf["pjsip.conf"], conf["extensions.conf"]
    assert "type = registration" in pjsip and "server_uri = sip:sip.carrier.example:5080" in pjsip
    assert "client_uri = sip:4008001234@sip.carrier.example" in pjsip
    assert "password = s3cret-pass" in pjsip  # only in the 0600 rendered file
    assert "send_pai = yes" in pjsip and "match = 203.0.113.0/24" in pjsip
    assert pjsip.count("type = registration") == 1  # the IP trunk does not register
    assert "exten => 4008001299,1,Goto(inbound,4008001299,1)" in dialplan
    assert "[trunk-backup-in]" in dialplan
    outbound = dialplan[dialplan.index("[callflow-outbound]"):dialplan.index("[trunk-")]
    assert ("Dial(PJSIP/${EXTEN}@trunk-carrier,${CALLFLOW_RING_S},${CALLFLOW_DIAL_OPTIONS})"
            in outbound)
    assert "exten => _+X.,1,Set(CALLERID(all)=${CALLFLOW_CLI})" in outbound
    assert "Playback(ss-noservice)" not in outbound


def test_no_trunk_means_no_way_out_and_the_test_customer_still_works(tmp_path: Path) -> None:
    assert outbound_target(PbxConfig(1, "u", "s", 2, 3, 4, "127.0.0.1", 5)) is None
    conf = _render(tmp_path)
    outbound = conf["extensions.conf"].split("[callflow-outbound]")[1].split("[callflow-")[0]
    assert "Playback(ss-noservice)" in outbound and "Dial(" not in outbound
    conf = _render(tmp_path, customer_contact="sip:customer@127.0.0.1:5999")
    assert re.search(r"Dial\(PJSIP/\$\{EXTEN\}@customer,", conf["extensions.conf"])
    assert os.path.exists(tmp_path / "etc" / "pjsip.conf")


def test_trunk_check_lines_say_which_trunk_is_down(tmp_path: Path) -> None:
    carrier, backup = load_trunks(trunks_file(tmp_path, example(tmp_path)))
    statuses = trunk_statuses(
        (carrier, backup),
        [{"ObjectName": "trunk-carrier", "Status": "Rejected"}],
        [{"AOR": "trunk-carrier", "Status": "Reachable", "RoundtripUsec": "1500"},
         {"AOR": "trunk-backup", "Status": "Unreachable"}])
    assert [s.line() for s in statuses] == [
        "carrier: DOWN -- registration Rejected, sip:sip.carrier.example:5080 Reachable "
        "rtt 1.5 ms",
        "backup: DOWN -- registration n/a, sip:203.0.113.10:5060 Unreachable"]
    fine = trunk_statuses((carrier,), [{"ObjectName": "trunk-carrier", "Status": "Registered"}],
                          [])
    assert not fine[0].down and fine[0].reachability == "Unknown"
