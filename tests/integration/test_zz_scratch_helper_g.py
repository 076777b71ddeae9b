def test_scratch(asterisk, sipp):
    sipp.softphone("1001", "uas_answer.xml")
    resp, items = asterisk.tap.action_list(Action="PJSIPShowContacts")
    for i in items:
        print({k: v for k, v in i.items() if k in ("Event", "ObjectName", "Endpoint", "Status", "Aor", "AOR", "Uri")})
