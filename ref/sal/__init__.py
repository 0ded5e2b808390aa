"""A Service Access Layer host and service router (sans-IO cores).

Service table, flow table, handshake, migration and the transports on top,
as the draft specifies them.  Resolution reaches the SAL through a resolver
interface defined here; ``ref.sal`` never imports ``ref.chord``.
"""
