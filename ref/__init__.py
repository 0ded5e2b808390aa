"""The Serval reference implementation.

``ref.wire`` declares every wire format once, ``ref.sal`` is a Service Access
Layer host and service router, ``ref.chord`` a ServalDHT node, and
``ref.draft`` reads the Internet-Draft (``spec/rfc-serval-dht.md``).
"""
