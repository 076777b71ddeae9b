"""The FastAGI server and the call flows Asterisk hands each call to (inbound, feature
codes): short flows that ask the core where to send the call and report what happened."""
