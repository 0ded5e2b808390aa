"""Fuzzing campaigns of the Serval reference implementation (``python -m fuzz``).

Theory of operation.  A campaign (:mod:`fuzz.registry`) is a harness, a
function that takes the bytes of one input and raises, or lets escape,
anything but ``RemoteProtocolError`` when something is wrong, plus where it
starts (:mod:`fuzz.seeds`).  Three kinds run them:

* coverage-guided (:mod:`fuzz.worker` under atheris and libFuzzer): the
  decoders (:mod:`fuzz.decoders`), the ServalDHT node (:mod:`fuzz.nodes`)
  and the SAL host (:mod:`fuzz.hosts`), millions of inputs in process;
* structure-aware (:mod:`fuzz.structured`, Hypothesis): legal messages from
  the declarations with a mutation or three, and a state machine of
  several peers talking to one node;
* over the network (:mod:`fuzz.network`): the harness's socket fuzzer
  against a ``serval-node`` process.

The supervisor (:mod:`fuzz.campaign`) runs the jobs of a campaign as worker
processes, shows their progress, minimises and keeps what they find
(:mod:`fuzz.findings`, ``fuzz/crashes/``) and merges the corpus
(``fuzz/corpus/``); :mod:`fuzz.report` sums up the runs.  Nothing here is
imported by ``ref`` or ``conformance``.
"""
