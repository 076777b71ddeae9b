"""SIPp processes that play the demo's agents' softphones and its callers.

SIPp (Debian's ``sip-tester``, installed by ``make run``) speaks real SIP to the real
Asterisk, so the demo's calls are the product's calls: the flow, the queue, the
agents' states and the records are the same as for a person with a softphone.

- an agent's softphone is a SIPp UAS on its own port that REGISTERs as the roster's
  endpoint with the roster's password (digest auth, as a real softphone), rings
  ``ring_ms``, answers, talks ``talk_ms`` and hangs up (or takes the caller's BYE);
- the callers are one SIPp UAC placing ``rate`` calls a minute to a DID; each caller
  waits at most ``patience_ms`` for the conversation to end and hangs up then.

The scenarios are written into a work directory at start (no files to ship or find).
Every process runs in its own session (a Ctrl-C in the terminal reaches the demo only,
which then stops them in order) and dies with the demo if the demo is killed
(``PR_SET_PDEATHSIG``), so nothing is left behind.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from callflow.errors import CallflowError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

_AGENT_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callflow demo: agent softphone (ring, answer, talk, hang up)">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="peer"/>
      <ereg regexp="sip:[^&gt;;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="peer_contact"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]demo[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{ring_ms}"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]demo[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=agent 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE" timeout="{talk_ms}" ontimeout="hangup"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [$peer_contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:agent@[local_ip]:[local_port]>;tag=[pid]demo[call_number]
      To:[$peer]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <label id="end"/>
</scenario>
"""

_REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callflow demo: REGISTER with digest auth">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[user]@[remote_ip]>;tag=[pid]demoR[call_number]
      To: <sip:[user]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[user]@[local_ip]:[contact_port]>
      Expires: [expires]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true" next="done"/>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[user]@[remote_ip]>;tag=[pid]demoR[call_number]
      To: <sip:[user]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[user]@[local_ip]:[contact_port]>
      Expires: [expires]
      [authentication]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <label id="done"/>
</scenario>
"""

_CALLER_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callflow demo: a caller (call, wait for the end, or give up)">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE" timeout="{patience_ms}" ontimeout="give_up"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="give_up"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:{caller_prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <label id="end"/>
</scenario>
"""

#: SIPp sends RTP from its media port and expects video on media port + 2
MEDIA_SPACING = 4


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Sipp:
    """One SIPp process and its log files."""

    name: str
    proc: subprocess.Popen[bytes]
    log_file: Path

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``: the process is gone on return."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class SippPhones:
    """Starts and stops the demo's SIPp processes; ``stop_all`` leaves none behind."""

    def __init__(self, work_dir: Path, sip_host: str, sip_port: int, port_base: int,
                 sipp: str = "sipp") -> None:
        found = shutil.which(sipp)
        if found is None:
            raise CallflowError(f"{sipp} not found: install Debian's sip-tester "
                                "(`make run` does)")
        self.sipp = found
        self.work_dir = work_dir
        self.target = f"{sip_host}:{sip_port}"
        self.host = sip_host
        self.port_base = port_base
        self.processes: list[Sipp] = []

    def media_port(self, sip_port: int) -> int:
        """Each SIPp's RTP port, clear of every other's (SIPp also takes media port + 2)."""
        return self.port_base + 100 + MEDIA_SPACING * (sip_port - self.port_base)

    def _scenario(self, name: str, text: str) -> Path:
        path = self.work_dir / name
        path.write_text(text)
        return path

    def _start(self, name: str, scenario: Path, port: int, *args: object) -> Sipp:
        log_file = self.work_dir / f"{name}.log"
        cmd = [self.sipp, "-sf", str(scenario), "-i", self.host, "-p", str(port),
               "-mp", str(self.media_port(port)), "-nostdin",
               "-trace_err", "-error_file", str(self.work_dir / f"{name}.err"),
               *map(str, args)]
        with log_file.open("wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=self.work_dir,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        run = Sipp(name, proc, log_file)
        self.processes.append(run)
        return run

    def softphone(self, endpoint: str, port: int, ring_ms: int, talk_ms: int) -> Sipp:
        """An agent's softphone: a UAS on ``port`` that rings, answers, talks, hangs up."""
        scenario = self._scenario(f"agent-{endpoint}.xml", _AGENT_UAS.format(
            ring_ms=max(0, ring_ms), talk_ms=max(1000, talk_ms)))
        return self._start(f"phone-{endpoint}", scenario, port, "-aa")

    def register(self, endpoint: str, password: str, contact_port: int, reg_port: int,
                 expires: int, timeout_s: float = 15.0) -> None:
        """REGISTER ``endpoint`` (digest auth) with its contact on ``contact_port``;
        ``expires=0`` removes it. Raises CallflowError naming what Asterisk answered."""
        scenario = self._scenario("register.xml", _REGISTER)
        run = self._start(f"register-{endpoint}-{expires}", scenario, reg_port, self.target,
                          "-m", 1, "-timeout", f"{int(timeout_s)}s", "-au", endpoint,
                          "-ap", password, "-key", "user", endpoint,
                          "-key", "contact_port", contact_port, "-key", "expires", expires)
        try:
            code = run.proc.wait(timeout_s + 5)
        except subprocess.TimeoutExpired:
            run.stop()
            code = -1
        self.processes.remove(run)
        if code != 0:
            raise CallflowError(f"{endpoint} could not register at {self.target} (SIPp exit "
                                f"{code}): is `callflow run` up, and is the password in "
                                f"agents.toml the one Asterisk has?\n{run.tail()}")

    def callers(self, did: str, port: int, per_minute: float, max_calls: int,
                patience_ms: int, caller_prefix: str) -> Sipp:
        """A stream of callers to ``did``: ``per_minute`` new calls a minute, at most
        ``max_calls`` at once."""
        scenario = self._scenario("caller.xml", _CALLER_UAC.format(
            patience_ms=max(1000, patience_ms), caller_prefix=caller_prefix))
        return self._start("callers", scenario, port, self.target, "-s", did,
                           "-r", f"{per_minute:g}", "-rp", "60000", "-l", max_calls)

    def stop_all(self) -> None:
        for run in reversed(self.processes):
            run.stop()
        self.processes.clear()
