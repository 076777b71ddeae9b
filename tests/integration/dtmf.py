"""SIPp callers that press keys on a schedule (RFC 4733 events from sip-tester's pcaps).

A caller cannot hear our prompts, so a test that answers a menu writes the key
presses as times after the call is answered, chosen from the Policy and the
prompts' lengths; the AGI events the tap records then show whether each key landed
in the menu it was meant for.
"""

from __future__ import annotations

import struct
from pathlib import Path

PCAP_DIR = Path("/usr/share/sip-tester")
KEY_PCAP = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
            "#": "dtmf_2833_pound.pcap", "*": "dtmf_2833_star.pcap"}

HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAC: call [service], press keys on a schedule, {ending}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[from_user]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[from_user]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true">
    <action><log message="[clock_tick] 200"/></action>
  </recv>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[from_user]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[from_user]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

KEY = """  <pause milliseconds="{pause_ms}"/>
  <nop><action><log message="[clock_tick] KEY {key}"/>
    <exec play_pcap_audio="{pcap}"/></action></nop>
"""

WAIT_FOR_BYE = """  <recv request="BYE">
    <action><log message="[clock_tick] BYE-from-asterisk"/></action>
  </recv>
  <send>
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
</scenario>
"""


def key_pcap(out: Path, key: str, n: int) -> Path:
    """sip-tester's capture of ``key`` renumbered as the ``n``-th press of one stream.

    The shipped captures come from one session (key 1 has lower RTP sequence numbers and
    timestamp than key 2): replayed out of order, Asterisk drops them as old packets, and
    two presses with one timestamp count as one event (RFC 4733). Each press gets its
    own, increasing sequence numbers and timestamp.
    """
    data = bytearray((PCAP_DIR / KEY_PCAP[key]).read_bytes())
    off, i = 24, 0
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        rtp = off + 16 + 42  # pcap record header, Ethernet + IPv4 + UDP
        struct.pack_into(">HI", data, rtp + 2, (20000 + n * 50 + i) & 0xFFFF, 800000 + n * 16000)
        struct.pack_into(">H", data, off + 16 + 40, 0)  # UDP checksum: none
        off += 16 + incl
        i += 1
    path = out / f"press{n:02d}_{'pound' if key == '#' else 'star' if key == '*' else key}.pcap"
    path.write_bytes(bytes(data))
    return path


def keys_scenario(path: Path, presses: list[tuple[float, str]]) -> Path:
    """A caller that presses each key at its time (seconds after the answer), then waits
    for Asterisk to hang up (the flow ends the call politely)."""
    parts = [HEAD.format(ending="wait for Asterisk's BYE")]
    elapsed = 0.0
    n = 0
    for at, keys in sorted(presses):
        for i, key in enumerate(keys):
            start = at + i * 0.4  # one event takes ~0.2 s of RTP; leave a gap
            parts.append(KEY.format(pause_ms=max(0, round((start - elapsed) * 1000)),
                                    key=key, pcap=key_pcap(path.parent, key, n)))
            elapsed = start
            n += 1
    parts.append(WAIT_FOR_BYE)
    path.write_text("".join(parts), encoding="iso-8859-1")
    return path
