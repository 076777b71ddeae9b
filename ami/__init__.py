"""callflow.ami: the AMI adapter (a connection owner over asterisk-ami) and the sans-I/O
frame parser."""
