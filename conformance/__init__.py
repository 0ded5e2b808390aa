"""The conformance harness: checks any Serval implementation over a socket.

Cases are named by the draft's requirement IDs.  The harness imports
``ref.wire`` only: it judges by the draft, not by the reference's code.
"""
