"""A ServalDHT node: Chord (with Zave's corrections) resolving serviceIDs.

A ServalDHT node is a SAL host that runs the resolution service; it
implements the resolver interface of ``ref.sal``.
"""
